"""Read-only views of connections, customers, deals and sync runs, with search and filters.

The only writes are actions that publish commands, exactly as the API would.
"""

import uuid
from typing import Any, ClassVar

import structlog
from sqladmin import Admin, ModelView, action
from sqladmin.filters import AllUniqueStringValuesFilter, BooleanFilter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from common.bus import publish_command
from common.events import DealMarkRead
from common.models import BusinessConnection, Customer, Deal, SyncRun
from gateway.deps import Resources
from gateway.sync import runs

log = structlog.get_logger(__name__)


class ReadOnly(ModelView):
    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    page_size = 50


class BusinessConnectionAdmin(ReadOnly, model=BusinessConnection):
    name_plural = "Business connections"
    column_list: ClassVar[Any] = [
        BusinessConnection.id,
        BusinessConnection.owner_user_id,
        BusinessConnection.status,
        BusinessConnection.is_enabled,
        BusinessConnection.connected_at,
        BusinessConnection.updated_at,
    ]
    column_searchable_list: ClassVar[Any] = [BusinessConnection.id]
    column_filters: ClassVar[Any] = [
        BooleanFilter(BusinessConnection.is_enabled),
        AllUniqueStringValuesFilter(BusinessConnection.status),
    ]
    column_sortable_list: ClassVar[Any] = [BusinessConnection.updated_at]


class CustomerAdmin(ReadOnly, model=Customer):
    column_list: ClassVar[Any] = [
        Customer.id,
        Customer.source,
        Customer.external_id,
        Customer.name,
        Customer.username,
        Customer.avatar_key,
        Customer.updated_at,
    ]
    column_searchable_list: ClassVar[Any] = [Customer.name, Customer.username, Customer.external_id]
    column_filters: ClassVar[Any] = [AllUniqueStringValuesFilter(Customer.source)]
    column_sortable_list: ClassVar[Any] = [Customer.name, Customer.updated_at]


class DealAdmin(ReadOnly, model=Deal):
    column_list: ClassVar[Any] = [
        Deal.id,
        Deal.source,
        Deal.external_id,
        Deal.owner_user_id,
        Deal.last_message_at,
        Deal.total_messages,
        Deal.unread_count,
        Deal.read_sync_status,
        Deal.synced_at,
    ]
    column_searchable_list: ClassVar[Any] = [Deal.external_id, Deal.business_connection_id]
    column_filters: ClassVar[Any] = [
        AllUniqueStringValuesFilter(Deal.source),
        AllUniqueStringValuesFilter(Deal.sync_status),
    ]
    column_sortable_list: ClassVar[Any] = [Deal.last_message_at, Deal.unread_count]
    column_default_sort: ClassVar[Any] = [(Deal.last_message_at, True)]

    @action(name="mark_read", label="Mark read", confirmation_message="Mark these deals read?")
    async def mark_read(self, request: Request) -> Response:
        resources: Resources = request.state.resources
        for pk in filter(None, request.query_params.get("pks", "").split(",")):
            command = DealMarkRead(deal_id=uuid.UUID(pk))
            await publish_command(
                resources.broker, command, timeout=resources.settings.publish_confirm_timeout
            )
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)


class SyncRunAdmin(ReadOnly, model=SyncRun):
    column_list: ClassVar[Any] = [
        SyncRun.id,
        SyncRun.status,
        SyncRun.kind,
        SyncRun.resumed_from,
        SyncRun.max_date,
        SyncRun.processed_chats,
        SyncRun.imported_messages,
        SyncRun.failed_chats,
        SyncRun.error,
        SyncRun.created_at,
    ]
    column_searchable_list: ClassVar[Any] = [SyncRun.error]
    column_filters: ClassVar[Any] = [AllUniqueStringValuesFilter(SyncRun.status)]
    column_sortable_list: ClassVar[Any] = [SyncRun.created_at]
    column_default_sort: ClassVar[Any] = [(SyncRun.created_at, True)]

    @action(
        name="start_sync",
        label="Start a sync",
        confirmation_message="Start a batch import now?",
        add_in_detail=False,
    )
    async def start_sync(self, request: Request) -> Response:
        resources: Resources = request.state.resources
        result = await runs.start(resources, None, None)
        log.info("sync started from the admin UI", result=repr(result))
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)


def add_views(admin: Admin) -> None:
    for view in (BusinessConnectionAdmin, CustomerAdmin, DealAdmin, SyncRunAdmin):
        admin.add_view(view)
