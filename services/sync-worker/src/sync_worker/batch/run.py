"""One sync run, from its checkpoint to its end: the retry list first, then the walk.

The checkpoint is the run row: `cursor` (the upstream page being walked; NULL = the first),
`page_position` (the next chat in it), `chat_cursor` (the message page inside the current
chat) and `checkpoint` JSONB: `phase` (`retry` | `walk`), `retry_done` (retry chats handled
by this run), `current` (the chat being imported: its upstream JSON, message cursor, the key
where an earlier complete import ends, messages imported so far) and `failed` (the upstream
JSON of chats that went to the retry list, since the upstream cannot fetch one chat by id).
Each chat ends in one fenced transaction that also moves the checkpoint past it.
"""

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import transaction
from common.events import SyncProgress
from common.ids import deal_id_for_external
from common.models import Deal, SyncRetryChat, SyncRun
from sync_worker.batch.client import (
    Chat,
    UpstreamAuthError,
    UpstreamError,
    UpstreamUnavailable,
)
from sync_worker.batch.importer import Advance, Deps, chat_checkpoint, import_chat, publish_quietly
from sync_worker.batch.lease import Lease, as_utc, fenced, finish

log = structlog.get_logger(__name__)


def chat_failure(error: BaseException) -> bool:
    """Errors that belong to one chat (gone, malformed): the chat waits in the retry list.
    An upstream that is down or refuses the token fails the whole run instead."""
    return isinstance(error, UpstreamError) and not isinstance(
        error, UpstreamUnavailable | UpstreamAuthError
    )


async def execute(deps: Deps, lease: Lease) -> SyncRun:
    async with deps.sessions() as session:
        run = await session.get_one(SyncRun, lease.run_id)
    await progress(deps, lease.run_id)
    if run.checkpoint.get("phase", "retry") == "retry":
        await _retry_phase(deps, lease, run)
        async with deps.sessions() as session:
            run = await session.get_one(SyncRun, lease.run_id)
    await _walk(deps, lease, run)
    done = await finish(deps.sessions, lease, "completed")
    await progress(deps, lease.run_id)
    return done


async def _retry_phase(deps: Deps, lease: Lease, run: SyncRun) -> None:
    async with deps.sessions() as session:
        chat_ids = (
            await session.scalars(
                select(SyncRetryChat.chat_id).order_by(
                    SyncRetryChat.created_at, SyncRetryChat.chat_id
                )
            )
        ).all()
    done = set(run.checkpoint.get("retry_done", []))
    current = _current(run, "retry")
    for chat_id in chat_ids:
        if chat_id in done:
            continue
        advance = _retry_advance(chat_id)
        raw = await _failed_chat_json(deps, chat_id)
        if raw is None:
            log.warning("retry chat unknown to every run; kept for a person", chat_id=chat_id)
            async with transaction(deps.sessions) as session:
                await advance(session, await fenced(session, lease))
            continue
        chat = Chat.model_validate(raw)
        resume = current if current is not None and current["chat"]["id"] == chat_id else None
        state = resume or chat_checkpoint(chat, "retry")
        max_date = as_utc(run.max_date) if run.max_date is not None else None
        await _import_or_fail(deps, lease, chat, state, max_date, advance)
    async with transaction(deps.sessions) as session:
        fenced_run = await fenced(session, lease)
        checkpoint = dict(fenced_run.checkpoint)
        if (checkpoint.get("current") or {}).get("phase") == "retry":
            checkpoint.pop("current")
        fenced_run.checkpoint = {**checkpoint, "phase": "walk"}
    await progress(deps, lease.run_id)


async def _walk(deps: Deps, lease: Lease, run: SyncRun) -> None:
    held = {"current": _current(run, "walk")}
    await _walk_pages(deps, lease, run, held)
    if held["current"] is not None:
        # The saved chat is no longer where the checkpoint said (the list moved).
        await _abandon(deps, lease, held["current"])


async def _walk_pages(
    deps: Deps, lease: Lease, run: SyncRun, held: dict[str, dict[str, Any] | None]
) -> None:
    cursor, position = run.cursor, run.page_position
    max_date = as_utc(run.max_date) if run.max_date is not None else None
    while True:
        page = await deps.api.list_chats(cursor, deps.page_size)
        known = await _known_deals(deps, page.items)
        for index in range(position, len(page.items)):
            chat = page.items[index]
            if max_date is not None and chat.last_message.created_at < max_date:
                return
            unchanged = known.get(chat.id) == ("synced", chat.last_message.id)
            if unchanged and run.kind == "incremental":
                return
            current, held["current"] = held["current"], None
            resume = current if current is not None and current["chat"]["id"] == chat.id else None
            if current is not None and resume is None:
                await _abandon(deps, lease, current)
            advance = _walk_advance(index + 1)
            if unchanged:
                await _skip(deps, lease, advance)
                continue
            state = resume or chat_checkpoint(chat, "walk")
            await _import_or_fail(deps, lease, chat, state, max_date, advance)
        await progress(deps, lease.run_id)
        if page.next_cursor is None:
            return
        async with transaction(deps.sessions) as session:
            fenced_run = await fenced(session, lease)
            fenced_run.cursor, fenced_run.page_position = page.next_cursor, 0
        cursor, position = page.next_cursor, 0


async def _import_or_fail(
    deps: Deps,
    lease: Lease,
    chat: Chat,
    state: dict[str, Any],
    max_date: datetime | None,
    advance: Advance,
) -> None:
    try:
        await import_chat(deps, lease, chat, state, max_date=max_date, advance=advance)
    except Exception as error:
        if not chat_failure(error):
            raise
        log.warning("chat import failed; kept for retry", chat_id=chat.id, error=str(error))
        await _fail_chat(deps, lease, chat, str(error), advance)


async def _fail_chat(
    deps: Deps, lease: Lease, chat: Chat, error: str, advance: Advance | None
) -> None:
    async with transaction(deps.sessions) as session:
        run = await fenced(session, lease)
        statement = insert(SyncRetryChat).values(
            chat_id=chat.id, first_failed_run=run.id, attempts=1, last_error=error[:2000]
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[SyncRetryChat.chat_id],
                set_={
                    "attempts": SyncRetryChat.attempts + 1,
                    "last_error": statement.excluded.last_error,
                    "updated_at": func.now(),
                },
            )
        )
        failed = {**run.checkpoint.get("failed", {}), chat.id: chat.model_dump(mode="json")}
        checkpoint = {k: v for k, v in run.checkpoint.items() if k != "current"}
        run.checkpoint = {**checkpoint, "failed": failed}
        run.chat_cursor = None
        run.failed_chats += 1
        run.processed_chats += 1
        if advance is not None:
            await advance(session, run)


async def _abandon(deps: Deps, lease: Lease, current: dict[str, Any]) -> None:
    chat = Chat.model_validate(current["chat"])
    await _fail_chat(deps, lease, chat, "import interrupted and the chat moved in the list", None)


async def _skip(deps: Deps, lease: Lease, advance: Advance) -> None:
    async with transaction(deps.sessions) as session:
        run = await fenced(session, lease)
        run.skipped_chats += 1
        run.processed_chats += 1
        await advance(session, run)


def _walk_advance(position: int) -> Advance:
    async def advance(_session: AsyncSession, run: SyncRun) -> None:
        run.page_position = position

    return advance


def _retry_advance(chat_id: str) -> Advance:
    async def advance(_session: AsyncSession, run: SyncRun) -> None:
        run.checkpoint = {
            **run.checkpoint,
            "retry_done": [*run.checkpoint.get("retry_done", []), chat_id],
        }

    return advance


def _current(run: SyncRun, phase: str) -> dict[str, Any] | None:
    current = run.checkpoint.get("current")
    if isinstance(current, dict) and current.get("phase") == phase:
        return current
    return None


async def _known_deals(deps: Deps, chats: list[Chat]) -> dict[str, tuple[str, str | None]]:
    ids = {deal_id_for_external(chat.id): chat.id for chat in chats}
    async with deps.sessions() as session:
        rows = await session.execute(
            select(Deal.id, Deal.sync_status, Deal.last_message_id).where(Deal.id.in_(ids))
        )
        return {ids[row.id]: (row.sync_status, row.last_message_id) for row in rows}


async def _failed_chat_json(deps: Deps, chat_id: str) -> dict[str, Any] | None:
    failed = SyncRun.checkpoint["failed"]
    async with deps.sessions() as session:
        raw = await session.scalar(
            select(failed[chat_id])
            .where(failed.has_key(chat_id))
            .order_by(SyncRun.created_at.desc())
            .limit(1)
        )
    return raw if isinstance(raw, dict) else None


async def progress(deps: Deps, run_id: uuid.UUID) -> None:
    async with deps.sessions() as session:
        run = await session.get_one(SyncRun, run_id, populate_existing=True)
    await publish_quietly(
        deps,
        SyncProgress(
            task_id=run.id,
            status=run.status,
            processed_chats=run.processed_chats,
            imported_messages=run.imported_messages,
            skipped_chats=run.skipped_chats,
            failed_chats=run.failed_chats,
        ),
    )
