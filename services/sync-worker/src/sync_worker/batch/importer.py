"""Importing one upstream chat: its customer, its messages (newest first) and its deal.

Every message page is written to DynamoDB first (idempotent puts), then one transaction,
fenced by the lease, inserts the message keys (`ON CONFLICT DO NOTHING` decides what is new),
moves the deal's counters for the new keys only, and saves the page's checkpoint. A crash
anywhere repeats at most the last page, and repeating it changes nothing.
"""

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from common.db import transaction
from common.events import CustomerImported
from common.ids import customer_id_for_external, deal_id_for_external, imported_message_key
from common.models import Customer, Deal
from sync_worker.batch.client import Chat, Message, MessagePage
from sync_worker.batch.deps import Advance, Deps, ImportedCustomer, Prepared
from sync_worker.batch.items import items_for, put_items
from sync_worker.batch.lease import Lease
from sync_worker.batch.writes import commit_page

log = structlog.get_logger(__name__)


def chat_checkpoint(chat: Chat, phase: str) -> dict[str, Any]:
    """The state of a chat whose import has begun, saved in the run's checkpoint."""
    return {
        "chat": chat.model_dump(mode="json"),
        "phase": phase,
        "cursor": None,
        "stop_key": None,
        "imported": 0,
        "started": False,
    }


@dataclass(frozen=True)
class Known:
    """What the walk read for a whole page at once: saves two queries per chat."""

    customer: ImportedCustomer | None
    stop_key: str | None


async def prepare(
    deps: Deps,
    chat: Chat,
    progress: dict[str, Any],
    *,
    max_date: datetime | None,
    known: Known | None = None,
) -> Prepared:
    if known is not None and known.customer is not None:
        customer = known.customer
    elif known is not None:  # the page's lookup found none: skip the second lookup
        customer = await _new_customer(deps, chat)
    else:
        customer = await ensure_customer(deps, chat)
    await deps.publish(
        CustomerImported(
            customer_id=customer.id,
            external_id=customer.external_id,
            avatar_url=customer.avatar_url,
            owner_user_id=chat.owner_id,
        )
    )
    if progress["started"]:
        stop_key = progress["stop_key"]
    else:
        stop_key = known.stop_key if known is not None else await _stop_key(deps, chat)
    page = await deps.api.list_messages(chat.id, progress["cursor"], deps.message_page_size)
    wanted, done = _select(page, stop_key, max_date)
    await put_items(deps, items_for(chat, customer, wanted))
    return Prepared(customer, stop_key, page, wanted, done)


async def import_chat(
    deps: Deps,
    lease: Lease,
    chat: Chat,
    progress: dict[str, Any],
    *,
    max_date: datetime | None,
    advance: Advance,
    prepared: Awaitable[Prepared] | None = None,
) -> int:
    """Import `chat` from where `progress` (its checkpoint) says; returns new messages."""
    ready = await (prepared or prepare(deps, chat, progress, max_date=max_date))
    progress = {**progress, "started": True, "stop_key": ready.stop_key}
    page, wanted, done = ready.page, ready.wanted, ready.done
    while True:
        progress = await commit_page(
            deps,
            lease,
            chat,
            ready.customer,
            wanted,
            progress,
            page.next_cursor,
            advance if done else None,
        )
        if done:
            return int(progress["imported"])
        page = await deps.api.list_messages(chat.id, progress["cursor"], deps.message_page_size)
        wanted, done = _select(page, ready.stop_key, max_date)
        await put_items(deps, items_for(chat, ready.customer, wanted))


def _select(
    page: MessagePage, stop_key: str | None, max_date: datetime | None
) -> tuple[list[Message], bool]:
    """The page's messages newer than the cutoffs, and whether the chat ends here."""
    wanted: list[Message] = []
    for message in {m.id: m for m in page.items}.values():
        key = imported_message_key(message.created_at, message.id)
        too_old = max_date is not None and message.created_at < max_date
        if too_old or (stop_key is not None and key <= stop_key):
            return wanted, True
        wanted.append(message)
    return wanted, page.next_cursor is None


async def _stop_key(deps: Deps, chat: Chat) -> str | None:
    """Where an earlier complete import of the chat ended; after a partial one, nowhere.
    Only the lease holder writes external deals, so reading it ahead of the turn is safe."""
    async with deps.sessions() as session:
        row = (
            await session.execute(
                select(Deal.sync_status, Deal.last_message_key).where(
                    Deal.id == deal_id_for_external(chat.id)
                )
            )
        ).one_or_none()
    return row.last_message_key if row is not None and row.sync_status == "synced" else None


async def known_customers(deps: Deps, chats: list[Chat]) -> dict[str, ImportedCustomer]:
    ids = [customer_id_for_external(chat.customer_id) for chat in chats]
    async with deps.sessions() as session:
        rows = await session.execute(
            select(Customer.id, Customer.external_id, Customer.name, Customer.avatar_url).where(
                Customer.id.in_(ids)
            )
        )
        return {row.external_id: ImportedCustomer(*row) for row in rows}


async def ensure_customer(deps: Deps, chat: Chat) -> ImportedCustomer:
    """The chat's customer, fetched and stored when new; a stored one is never overwritten."""
    customer_id = customer_id_for_external(chat.customer_id)
    async with deps.sessions() as session:
        stored = await session.get(Customer, customer_id)
    if stored is not None:
        return ImportedCustomer(stored.id, stored.external_id, stored.name, stored.avatar_url)
    return await _new_customer(deps, chat)


async def _new_customer(deps: Deps, chat: Chat) -> ImportedCustomer:
    customer_id = customer_id_for_external(chat.customer_id)
    fetched = await deps.api.get_customer(chat.customer_id)
    columns = (Customer.id, Customer.external_id, Customer.name, Customer.avatar_url)
    async with transaction(deps.sessions) as session:
        row = (
            await session.execute(
                insert(Customer)
                .values(
                    id=customer_id,
                    source="external",
                    external_id=chat.customer_id,
                    name=fetched.name,
                    avatar_url=fetched.avatar_url,
                )
                .on_conflict_do_nothing()
                .returning(*columns)
            )
        ).one_or_none()
        if row is None:  # stored meanwhile by someone else: theirs stays
            row = (await session.execute(select(*columns).where(Customer.id == customer_id))).one()
    return ImportedCustomer(*row)
