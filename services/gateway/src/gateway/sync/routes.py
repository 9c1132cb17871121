"""`/api/v1/sync/...`: admin-only start and status of batch imports."""

import uuid
from typing import Annotated

from fastapi import Body, Path, Request, status
from sqlalchemy import select

from common.models import SyncRetryChat, SyncRun
from gateway.deals.views import api_url
from gateway.deps import AdminUser, ResourcesDep, SessionDep
from gateway.docs import errors
from gateway.inputs import parse_id
from gateway.problems import ProblemError, not_found
from gateway.routing import Router
from gateway.sync import runs
from gateway.sync.schemas import EXAMPLE_TASK_ID, SyncStarted, SyncStartIn, SyncStatus

router = Router(tags=["sync"])

RETRY_CHATS_SHOWN = 1000


def _status_url(request: Request, task_id: uuid.UUID) -> str:
    return api_url(request, f"/api/v1/sync/status/{task_id}/")


@router.post(
    "/api/v1/sync/start/",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 403, 503, s409="A run is pending or running; `task_id` names it."),
    summary="Start a batch import from the external chat API",
)
async def start_sync(
    request: Request,
    resources: ResourcesDep,
    user: AdminUser,
    body: Annotated[SyncStartIn | None, Body()] = None,
) -> SyncStarted:
    """One run at a time: while one is `pending` or `running`, 409 names it. After a failed
    run, the new one resumes from its checkpoint (`resumed_from`)."""
    max_date = body.max_date if body is not None else None
    result = await runs.start(resources, max_date, user.user_id)
    if isinstance(result, runs.Busy):
        task = str(result.task_id) if result.task_id else None
        raise ProblemError(
            409,
            f"sync task {task} is still {result.status}",
            slug="sync-active",
            task_id=task,
            status_url=_status_url(request, result.task_id) if result.task_id else None,
        )
    return SyncStarted(
        task_id=str(result.task_id),
        status_url=_status_url(request, result.task_id),
        resumed_from=str(result.resumed_from) if result.resumed_from else None,
    )


@router.get(
    "/api/v1/sync/status/{task_id}/",
    responses=errors(403, 404),
    summary="A batch import's status document",
)
async def get_sync_status(
    task_id: Annotated[str, Path(examples=[EXAMPLE_TASK_ID])],
    session: SessionDep,
    user: AdminUser,
) -> SyncStatus:
    run = await session.get(SyncRun, parse_id(task_id, "sync task"))
    if run is None:
        raise not_found("sync task")
    retry_chats = (
        await session.scalars(
            select(SyncRetryChat.chat_id)
            .order_by(SyncRetryChat.created_at, SyncRetryChat.chat_id)
            .limit(RETRY_CHATS_SHOWN)
        )
    ).all()
    return SyncStatus(
        task_id=str(run.id),
        status=run.status,
        resumed_from=str(run.resumed_from) if run.resumed_from else None,
        max_date=run.max_date,
        processed_chats=run.processed_chats,
        imported_messages=run.imported_messages,
        skipped_chats=run.skipped_chats,
        failed_chats=run.failed_chats,
        retry_chats=list(retry_chats),
        cursor=run.cursor,
        started_at=run.started_at,
        updated_at=run.updated_at,
        finished_at=run.finished_at,
        error=run.error,
    )
