"""The PostgreSQL side of an import: message keys decide what is new, in the transaction
that moves the deal's counters and the run's checkpoint (fenced by the lease)."""

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import delete, func, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import transaction
from common.events import DealUpdated, MessagePreview
from common.ids import deal_id_for_external, imported_message_key
from common.messages import preview_text
from common.models import Deal, SyncRetryChat, SyncRun
from sync_worker.batch.client import Chat, Message
from sync_worker.batch.deps import Advance, Deps, ImportedCustomer, Ready
from sync_worker.batch.lease import Lease, checkpoint_merge, checkpoint_without, update_run
from sync_worker.batch.metrics import CHATS, MESSAGES
from sync_worker.store import deal_updated

log = structlog.get_logger(__name__)


async def commit_group(
    deps: Deps, lease: Lease, group: list[Ready], advance: Advance, *, forget: set[str]
) -> None:
    """Finish several prepared chats in one transaction, moving the checkpoint past the last:
    fewer commits on the import's sequential path. `forget`: chats on the retry list."""
    events: list[DealUpdated] = []
    imported = 0
    async with transaction(deps.sessions) as session:
        for ready in group:
            page = ready.prepared
            written = await _write_page(
                session, ready.chat, page.customer, page.wanted, ready.progress, None, True
            )
            imported += written.fresh
            if written.event is not None:
                events.append(written.event)
            if ready.chat.id in forget:
                await _forget(session, ready.chat.id)
        checkpoint = checkpoint_without(SyncRun.checkpoint, "current")
        changes = {
            "imported_messages": SyncRun.imported_messages + imported,
            "processed_chats": SyncRun.processed_chats + len(group),
            "chat_cursor": None,
            "checkpoint": checkpoint,
        }
        await update_run(session, lease, {**changes, **advance(checkpoint)})
    CHATS.labels(outcome="imported").inc(len(group))
    MESSAGES.inc(imported)
    for event in events:
        deps.notices.send(event)


async def commit_page(
    deps: Deps,
    lease: Lease,
    chat: Chat,
    customer: ImportedCustomer,
    messages: list[Message],
    progress: dict[str, Any],
    next_cursor: str | None,
    finish: Advance | None,
) -> dict[str, Any]:
    """One transaction: the page's message keys, the deal's counters moved for the new ones,
    the run's counters and checkpoint."""
    async with transaction(deps.sessions) as session:
        written = await _write_page(
            session, chat, customer, messages, progress, next_cursor, finish is not None
        )
        changes: dict[str, Any] = {"imported_messages": SyncRun.imported_messages + written.fresh}
        if finish is None:
            changes["checkpoint"] = checkpoint_merge(
                SyncRun.checkpoint, "current", written.progress
            )
            changes["chat_cursor"] = next_cursor
        else:
            checkpoint = checkpoint_without(SyncRun.checkpoint, "current")
            changes.update(
                processed_chats=SyncRun.processed_chats + 1, chat_cursor=None, checkpoint=checkpoint
            )
            changes.update(finish(checkpoint))
            await _forget(session, chat.id)
        await update_run(session, lease, changes)
    MESSAGES.inc(written.fresh)
    if finish is not None:
        CHATS.labels(outcome="imported").inc()
    if written.event is not None:
        deps.notices.send(written.event)
    return written.progress


@dataclass(frozen=True)
class _Written:
    progress: dict[str, Any]
    fresh: int
    event: DealUpdated | None


async def _write_page(
    session: AsyncSession,
    chat: Chat,
    customer: ImportedCustomer,
    messages: list[Message],
    progress: dict[str, Any],
    next_cursor: str | None,
    finishing: bool,
) -> _Written:
    """The page's message keys (`ON CONFLICT DO NOTHING` decides what is new) and the deal's
    counters moved for the new ones only. Plain statements: this is the hot path."""
    deal_id = deal_id_for_external(chat.id)
    upsert = insert(Deal).values(
        id=deal_id,
        source="external",
        external_id=chat.id,
        owner_user_id=_owner(chat),
        customer_id=customer.id,
        sync_status="partial",
    )
    # The upsert locks the deal row for the rest of the transaction.
    deal = (
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=[Deal.id],
                set_={
                    "owner_user_id": upsert.excluded.owner_user_id,
                    "customer_id": upsert.excluded.customer_id,
                },
            ).returning(Deal.total_messages, Deal.last_message_key, Deal.synced_at)
        )
    ).one()
    new: set[str] = set()
    if messages:
        new = set(await session.scalars(_INSERT_KEYS, _key_rows(deal_id, messages)))
    fresh = [m for m in messages if m.id in new]
    changes: dict[str, Any] = {"total_messages": Deal.total_messages + len(fresh)}
    newest = max(fresh, key=lambda m: imported_message_key(m.created_at, m.id), default=None)
    if newest is not None:
        key = imported_message_key(newest.created_at, newest.id)
        if deal.last_message_key is None or key > deal.last_message_key:
            changes.update(_last(newest, key))
    progress = {**progress, "cursor": next_cursor, "imported": progress["imported"] + len(fresh)}
    changed = False
    if not finishing:
        # Until its last page commits, the deal is partial: a later run walks it all.
        changes["sync_status"] = "partial"
    else:
        newly_listed = deal.synced_at is None and deal.total_messages + len(fresh) > 0
        changes["sync_status"] = "synced"
        if newly_listed:
            changes["synced_at"] = func.now()
        changed = newly_listed or progress["imported"] > 0
        if changed:
            changes["version"] = Deal.version + 1
    row = (
        await session.execute(
            update(Deal)
            .where(Deal.id == deal_id)
            .values(**changes, updated_at=func.now())
            .returning(*_EVENT_COLUMNS)
        )
    ).one()
    return _Written(progress, len(fresh), deal_updated(row) if changed else None)


async def _forget(session: AsyncSession, chat_id: str) -> None:
    """Imported: off the retry list, whichever phase found it."""
    await session.execute(delete(SyncRetryChat).where(SyncRetryChat.chat_id == chat_id))


_INSERT_KEYS = text(
    """
    INSERT INTO message_key (deal_id, message_id, sort_key, direction, source, state, deleted,
                             sent_at)
    SELECT CAST(:deal_id AS uuid), u.message_id, u.sort_key, u.direction, 'imported', 'present',
           false, u.sent_at
    FROM unnest(CAST(:ids AS text[]), CAST(:keys AS text[]), CAST(:directions AS text[]),
                CAST(:sent AS timestamptz[])) AS u(message_id, sort_key, direction, sent_at)
    ON CONFLICT DO NOTHING
    RETURNING message_id
    """
)

_EVENT_COLUMNS = (
    Deal.id,
    Deal.owner_user_id,
    Deal.business_connection_id,
    Deal.chat_id,
    Deal.version,
    Deal.unread_count,
    Deal.total_messages,
    Deal.last_message_id,
    Deal.last_message_at,
    Deal.last_message,
)


def _key_rows(deal_id: uuid.UUID, messages: list[Message]) -> dict[str, Any]:
    return {
        "deal_id": str(deal_id),
        "ids": [m.id for m in messages],
        "keys": [imported_message_key(m.created_at, m.id) for m in messages],
        "directions": [m.direction for m in messages],
        "sent": [m.created_at for m in messages],
    }


def _last(message: Message, key: str) -> dict[str, Any]:
    preview = MessagePreview(
        text=preview_text({"text": message.text}),
        direction=message.direction,
        date=message.created_at,
    )
    return {
        "last_message_id": message.id,
        "last_message_key": key,
        "last_message_at": message.created_at,
        "last_message": preview.model_dump(mode="json"),
    }


def _owner(chat: Chat) -> int | None:
    if chat.owner_id is not None and chat.owner_id.isdigit():
        return int(chat.owner_id)
    if chat.owner_id is not None:
        log.warning("chat owner_id is not a Telegram user id", chat_id=chat.id)
    return None
