"""One sync run, from its checkpoint to its end: the retry list first, then the walk.

The checkpoint is the run row: `cursor` (the upstream page being walked; NULL = the first),
`page_position` (the next chat in it), `chat_cursor` (the message page inside the current
chat) and `checkpoint` JSONB: `phase` (`retry` | `walk`), `retry_done` (retry chats handled
by this run), `current` (the chat being imported: its upstream JSON, message cursor, the key
where an earlier complete import ends, messages imported so far) and `failed` (the upstream
JSON of chats that went to the retry list, since the upstream cannot fetch one chat by id).
Each chat ends in a fenced transaction that also moves the checkpoint past it. The chats of
a page are fetched and written to DynamoDB ahead of their turn (idempotent, so work ahead of
the checkpoint is merely repeated after a crash); commits go strictly in page order, and
consecutive chats that came whole in one message page share one transaction.
"""

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, literal, select
from sqlalchemy.dialects.postgresql import JSONB, insert

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
from sync_worker.batch.deps import Advance, Deps, Prepared, Ready
from sync_worker.batch.importer import (
    Known,
    chat_checkpoint,
    import_chat,
    known_customers,
    prepare,
)
from sync_worker.batch.lease import (
    Lease,
    as_utc,
    checkpoint_without,
    fenced,
    finish,
    update_run,
)
from sync_worker.batch.metrics import CHATS
from sync_worker.batch.writes import commit_group

log = structlog.get_logger(__name__)

# How many chats of a page are fetched and written to DynamoDB at once ahead of their commit,
# and how many ready ones may share one transaction.
PREFETCH_CHATS = 8
GROUP_CHATS = 20


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
                await update_run(session, lease, advance(SyncRun.checkpoint))
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
    async with deps.sessions() as session:
        retrying = set(await session.scalars(select(SyncRetryChat.chat_id)))
    await _walk_pages(deps, lease, run, held, retrying)
    if held["current"] is not None:
        # The saved chat is no longer where the checkpoint said (the list moved).
        await _abandon(deps, lease, held["current"])


async def _walk_pages(
    deps: Deps,
    lease: Lease,
    run: SyncRun,
    held: dict[str, dict[str, Any] | None],
    retrying: set[str],
) -> None:
    cursor, position = run.cursor, run.page_position
    max_date = as_utc(run.max_date) if run.max_date is not None else None
    # Fetching and DynamoDB writes run ahead (they are idempotent); commits go in order.
    slots = asyncio.Semaphore(PREFETCH_CHATS)

    async def ahead(chat: Chat, state: dict[str, Any], known: Known) -> Prepared:
        async with slots:
            return await prepare(deps, chat, state, max_date=max_date, known=known)

    while True:
        page = await deps.api.list_chats(cursor, deps.page_size)
        plan, known, finished = await _plan(deps, run, page.items, position, max_date)
        current, held["current"] = held["current"], None
        # The chat being imported is found where the checkpoint left it, or a little further
        # if the list shifted; if it is not on this page, it goes to the retry list.
        resume_at = next(
            (
                index
                for index, chat, unchanged in plan
                if current is not None and chat.id == current["chat"]["id"] and not unchanged
            ),
            None,
        )
        if current is not None and resume_at is None:
            await _abandon(deps, lease, current)
            retrying.add(current["chat"]["id"])
            current = None
        states = {
            index: current
            if current is not None and index == resume_at
            else chat_checkpoint(chat, "walk")
            for index, chat, unchanged in plan
            if not unchanged
        }
        tasks = {
            index: asyncio.create_task(ahead(chat, states[index], known[chat.id]))
            for index, chat, unchanged in plan
            if not unchanged
        }
        try:
            step = 0
            while step < len(plan):
                index, chat, unchanged = plan[step]
                if unchanged:
                    await _skip(deps, lease, _walk_advance(index + 1))
                    step += 1
                    continue
                group = await _ready_group(plan[step:], tasks, states)
                if group:
                    last = plan[step + len(group) - 1][0]
                    await commit_group(deps, lease, group, _walk_advance(last + 1), forget=retrying)
                    step += len(group)
                    continue
                await _import_or_fail(
                    deps,
                    lease,
                    chat,
                    states[index],
                    max_date,
                    _walk_advance(index + 1),
                    tasks[index],
                )
                step += 1
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        await progress(deps, lease.run_id)
        if finished or page.next_cursor is None:
            return
        async with transaction(deps.sessions) as session:
            fenced_run = await fenced(session, lease)
            fenced_run.cursor, fenced_run.page_position = page.next_cursor, 0
        cursor, position = page.next_cursor, 0


async def _ready_group(
    plan: list[tuple[int, Chat, bool]],
    tasks: dict[int, "asyncio.Task[Prepared]"],
    states: dict[int, dict[str, Any]],
) -> list[Ready]:
    """The next chats whose import came whole in their prefetched first page, in order, as
    far as they are ready: they commit together. Empty when the next one needs more."""
    group: list[Ready] = []
    for step, (index, chat, unchanged) in enumerate(plan[:GROUP_CHATS]):
        task = tasks.get(index)
        if unchanged or task is None:
            break
        if step == 0:
            await asyncio.wait({task})
        if not task.done() or task.exception() is not None or not task.result().done:
            break
        group.append(Ready(chat, task.result(), states[index]))
    return group


async def _plan(
    deps: Deps, run: SyncRun, chats: list[Chat], position: int, max_date: datetime | None
) -> tuple[list[tuple[int, Chat, bool]], dict[str, Known], bool]:
    """The page's chats to handle from `position` (with whether each is unchanged), what is
    stored about them, and whether the walk ends on this page."""
    deals = await _known_deals(deps, chats)
    customers = await known_customers(deps, chats)
    known: dict[str, Known] = {}
    plan: list[tuple[int, Chat, bool]] = []
    for index in range(position, len(chats)):
        chat = chats[index]
        if max_date is not None and chat.last_message.created_at < max_date:
            return plan, known, True
        deal = deals.get(chat.id)
        synced = deal is not None and deal.sync_status == "synced"
        unchanged = synced and deal is not None and deal.last_message_id == chat.last_message.id
        # A chat this run imported already may come round again if the list shifted.
        earlier = deal is not None and (run.started_at is None or deal.updated_at < run.started_at)
        if unchanged and earlier and run.kind == "incremental":
            return plan, known, True
        plan.append((index, chat, unchanged))
        stop_key = deal.last_message_key if synced and deal is not None else None
        known[chat.id] = Known(customers.get(chat.customer_id), stop_key)
    return plan, known, False


async def _import_or_fail(
    deps: Deps,
    lease: Lease,
    chat: Chat,
    state: dict[str, Any],
    max_date: datetime | None,
    advance: Advance,
    prepared: Awaitable[Prepared] | None = None,
) -> None:
    try:
        await import_chat(
            deps, lease, chat, state, max_date=max_date, advance=advance, prepared=prepared
        )
    except Exception as error:
        if not chat_failure(error):
            raise
        log.warning("chat import failed; kept for retry", chat_id=chat.id, error=str(error))
        await _fail_chat(deps, lease, chat, str(error), advance)


async def _fail_chat(
    deps: Deps, lease: Lease, chat: Chat, error: str, advance: Advance | None
) -> None:
    async with transaction(deps.sessions) as session:
        statement = insert(SyncRetryChat).values(
            chat_id=chat.id, first_failed_run=lease.run_id, attempts=1, last_error=error[:2000]
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
        # Keep the chat's upstream JSON: the upstream cannot fetch one chat by id.
        failed = func.coalesce(SyncRun.checkpoint["failed"], literal({}, JSONB)).op(
            "||", return_type=JSONB
        )(func.jsonb_build_object(chat.id, literal(chat.model_dump(mode="json"), JSONB)))
        checkpoint = checkpoint_without(SyncRun.checkpoint, "current").op("||", return_type=JSONB)(
            func.jsonb_build_object("failed", failed)
        )
        values: dict[str, Any] = {
            "checkpoint": checkpoint,
            "chat_cursor": None,
            "failed_chats": SyncRun.failed_chats + 1,
            "processed_chats": SyncRun.processed_chats + 1,
        }
        if advance is not None:
            values.update(advance(checkpoint))
        await update_run(session, lease, values)
    CHATS.labels(outcome="failed").inc()


async def _abandon(deps: Deps, lease: Lease, current: dict[str, Any]) -> None:
    chat = Chat.model_validate(current["chat"])
    await _fail_chat(deps, lease, chat, "import interrupted and the chat moved in the list", None)


async def _skip(deps: Deps, lease: Lease, advance: Advance) -> None:
    async with transaction(deps.sessions) as session:
        values = {
            "skipped_chats": SyncRun.skipped_chats + 1,
            "processed_chats": SyncRun.processed_chats + 1,
            **advance(SyncRun.checkpoint),
        }
        await update_run(session, lease, values)
    CHATS.labels(outcome="skipped").inc()


def _walk_advance(position: int) -> Advance:
    return lambda _checkpoint: {"page_position": position}


def _retry_advance(chat_id: str) -> Advance:
    def advance(checkpoint: Any) -> dict[str, Any]:
        done = func.coalesce(SyncRun.checkpoint["retry_done"], literal([], JSONB)).op(
            "||", return_type=JSONB
        )(literal([chat_id], JSONB))
        return {
            "checkpoint": checkpoint.op("||", return_type=JSONB)(
                func.jsonb_build_object("retry_done", done)
            )
        }

    return advance


def _current(run: SyncRun, phase: str) -> dict[str, Any] | None:
    current = run.checkpoint.get("current")
    if isinstance(current, dict) and current.get("phase") == phase:
        return current
    return None


async def _known_deals(deps: Deps, chats: list[Chat]) -> dict[str, Any]:
    ids = {deal_id_for_external(chat.id): chat.id for chat in chats}
    async with deps.sessions() as session:
        rows = await session.execute(
            select(
                Deal.id,
                Deal.sync_status,
                Deal.last_message_id,
                Deal.last_message_key,
                Deal.updated_at,
            ).where(Deal.id.in_(ids))
        )
        return {ids[row.id]: row for row in rows}


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
    deps.notices.send(
        SyncProgress(
            task_id=run.id,
            status=run.status,
            processed_chats=run.processed_chats,
            imported_messages=run.imported_messages,
            skipped_chats=run.skipped_chats,
            failed_chats=run.failed_chats,
        ),
    )
    await deps.notices.flush()
