"""The PostgreSQL side of the live path: deals and message keys (the parties: `parties.py`).

Runs inside the caller's transaction. Whether a message is new is decided by inserting its key
(`ON CONFLICT DO NOTHING`) while the deal's row is locked, and only a new key moves the
counters, so a redelivered event changes nothing. Every rule gives the same final state in
any arrival order:

- `total_messages` counts stored, not deleted keys; a delete lowers it once (`NOT deleted`).
- `unread_count` counts incoming live keys above the read horizon; the horizon is the newest
  outgoing message stored (deleted or not), as a Telegram client moves it.
- the preview is the newest stored, not deleted message with its newest edit.
- a delete seen first leaves a `tombstone` key, already deleted, that the late message fills in.
"""

import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

from sqlalchemy import any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import (
    ConnectionUpdated,
    DealUpdated,
    MessageEdited,
    MessagePreview,
    MessageReceived,
    MessagesDeleted,
    TelegramMessage,
    utcnow,
)
from common.ids import (
    customer_id_for_telegram,
    deal_id_for_telegram,
    telegram_deal_external_id,
    telegram_message_key,
)
from common.messages import direction_of, preview_text
from common.models import Deal, MessageKey
from sync_worker import parties
from sync_worker.parties import ChatEvent as ChatEvent
from sync_worker.parties import LiveEvent as LiveEvent

# Reads the preview of a stored message (from DynamoDB) when the newest one was deleted.
PreviewLoader = Callable[[uuid.UUID, str], Awaitable[MessagePreview | None]]


@dataclass(slots=True)
class DealRow:
    """The columns of a locked deal the live path reads and moves.

    Plain rows, not ORM objects: a batch under load touches hundreds of deals, and entity
    loading, change tracking and the flush cost CPU per deal that this path has no use for.
    """

    id: uuid.UUID
    owner_user_id: int | None
    business_connection_id: str | None
    chat_id: int | None
    customer_id: uuid.UUID | None
    version: int
    total_messages: int
    unread_count: int
    read_horizon_key: str | None
    read_up_to: str | None
    last_message_id: str | None
    last_message_key: str | None
    last_message_at: datetime | None
    last_message: dict[str, Any] | None
    synced_at: datetime | None
    sync_status: str


_DEAL: Final = Deal.metadata.tables[Deal.__tablename__]
_KEY: Final = MessageKey.metadata.tables[MessageKey.__tablename__]
_DEAL_COLUMNS: Final = [_DEAL.c[field.name] for field in fields(DealRow)]
_IDENTITY: Final = ("id", "owner_user_id", "business_connection_id", "chat_id", "customer_id")
# What the live path may change.
_MOVED: Final = tuple(field.name for field in fields(DealRow) if field.name not in _IDENTITY)
_NEW: Final = tuple(f"new_{name}" for name in _MOVED)  # a bind name may not be a column's
# One statement for every changed deal of a batch (executemany); `updated_at` by onupdate.
_WRITE_DEALS: Final = (
    update(_DEAL)
    .where(_DEAL.c.id == bindparam("deal_id"))
    .values({name: bindparam(new) for name, new in zip(_MOVED, _NEW, strict=True)})
)


# Statements whose text does not depend on the batch size: PostgreSQL (and asyncpg's
# statement cache) prepare each one once, where a multi-row VALUES or an IN list of each
# length would be parsed and planned again for every batch.
_LOCK_DEALS: Final = (
    select(*_DEAL_COLUMNS)
    .where(_DEAL.c.id == any_(bindparam("ids", type_=ARRAY(_DEAL.c.id.type))))
    .order_by(_DEAL.c.id)
    .with_for_update()
)
_KEY_INSERTED: Final = (
    "deal_id", "message_id", "sort_key", "direction", "source", "state", "deleted", "sent_at",
    "edit_date",
)  # fmt: skip
# One row per position of the arrays (several set-returning functions run in lockstep).
_INSERT_KEYS: Final = (
    insert(_KEY)
    .from_select(
        _KEY_INSERTED,
        select(
            *(
                func.unnest(bindparam(name, type_=ARRAY(_KEY.c[name].type)))
                for name in _KEY_INSERTED
            )
        ),
    )
    .on_conflict_do_nothing()
    .returning(_KEY.c.deal_id, _KEY.c.message_id)
)


@dataclass
class _Touched:
    deal: DealRow
    before: tuple[Any, ...]  # what `version` follows
    loaded: tuple[Any, ...]  # every column the batch may write
    refresh_preview: bool = False
    recount_unread: bool = False


def deal_id_of(event: ChatEvent) -> uuid.UUID:
    return _deal_id(event.business_connection_id, event.chat_id)


# A batch asks for each deal's id several times; a UUIDv5 is a SHA-1 each time.
_deal_id = functools.lru_cache(maxsize=65_536)(deal_id_for_telegram)


def preview_of(message: TelegramMessage, owner_user_id: str) -> MessagePreview:
    media = {"kind": message.media.kind} if message.media else None
    text = preview_text({"text": message.text, "caption": message.caption, "media": media})
    return MessagePreview(
        text=text, direction=direction_of(message, owner_user_id), date=message.date
    )


async def apply(
    session: AsyncSession, events: Sequence[LiveEvent], load_preview: PreviewLoader
) -> list[DealRow]:
    """Apply a batch of events; returns the deals they touched, changed or not."""
    chat_events = [event for event in events if not isinstance(event, ConnectionUpdated)]
    # Rows are locked in one order (owners, connections, customers, deals, each sorted),
    # so concurrent batches wait for each other instead of deadlocking.
    await parties.save_owners(session, events)
    await parties.save_connections(session, events)
    await parties.save_customers(session, chat_events)
    touched = await _lock_deals(session, chat_events)
    stored = [event for event in chat_events if not isinstance(event, MessagesDeleted)]
    deletes = [event for event in chat_events if isinstance(event, MessagesDeleted)]
    # Messages before deletes: the outcome does not depend on the order, so this one lets
    # every key of the batch be inserted in one statement.
    new_keys = await _insert_keys(session, stored)
    for event in stored:
        await _store(session, touched[deal_id_of(event)], event, new_keys)
    for deletion in deletes:
        for message_id in deletion.message_ids:
            await _delete(session, touched[deal_id_of(deletion)], message_id)
    for state in touched.values():
        if state.recount_unread:
            horizon = state.deal.read_horizon_key
            state.deal.unread_count = await _count_unread(session, state.deal.id, horizon)
        if state.refresh_preview:
            await _refresh_preview(session, state.deal, load_preview)
        if _snapshot(state.deal) != state.before:
            state.deal.version += 1
    await _write_deals(session, touched.values())
    return [state.deal for state in touched.values()]


def deal_updated(deal: Any) -> DealUpdated:
    """The `deal.updated` of a Deal, or of a row returning the same columns."""
    return DealUpdated(
        deal_id=deal.id,
        owner_user_id=str(deal.owner_user_id) if deal.owner_user_id is not None else None,
        business_connection_id=deal.business_connection_id,
        chat_id=str(deal.chat_id) if deal.chat_id is not None else None,
        version=deal.version,
        unread_count=deal.unread_count,
        total_messages=deal.total_messages,
        last_message_id=deal.last_message_id,
        last_message_at=deal.last_message_at,
        last_message=MessagePreview.model_validate(deal.last_message)
        if deal.last_message
        else None,
    )


# --- deals and messages -------------------------------------------------------------------


async def _lock_deals(
    session: AsyncSession, events: Sequence[ChatEvent]
) -> dict[uuid.UUID, _Touched]:
    firsts: dict[uuid.UUID, ChatEvent] = {}
    for event in events:
        firsts.setdefault(deal_id_of(event), event)
    if not firsts:
        return {}
    # executemany: one cached statement, rows sent in pages, whatever the batch size.
    await session.execute(
        insert(_DEAL).on_conflict_do_nothing(),
        [
            {
                "id": deal_id,
                "source": "telegram",
                "external_id": telegram_deal_external_id(
                    event.business_connection_id, event.chat_id
                ),
                "business_connection_id": event.business_connection_id,
                "chat_id": int(event.chat_id),
                "owner_user_id": int(event.owner_user_id),
                "customer_id": customer_id_for_telegram(event.chat_id),
            }
            for deal_id, event in sorted(firsts.items())
        ],
    )
    rows = await session.execute(_LOCK_DEALS, {"ids": sorted(firsts)})
    touched: dict[uuid.UUID, _Touched] = {}
    for row in rows:
        deal = DealRow(*row)
        touched[deal.id] = _Touched(deal, _snapshot(deal), _moved(deal))
    return touched


async def _write_deals(session: AsyncSession, touched: Iterable[_Touched]) -> None:
    changed = [
        {"deal_id": state.deal.id, **dict(zip(_NEW, moved, strict=True))}
        for state in touched
        if (moved := _moved(state.deal)) != state.loaded
    ]
    if changed:
        await session.execute(_WRITE_DEALS, changed)


def _moved(deal: DealRow) -> tuple[Any, ...]:
    return tuple(getattr(deal, name) for name in _MOVED)


def _snapshot(deal: DealRow) -> tuple[Any, ...]:
    return (
        deal.total_messages,
        deal.unread_count,
        deal.read_horizon_key,
        deal.last_message_key,
        deal.last_message,
        deal.synced_at,
        deal.customer_id,
    )


async def _insert_keys(
    session: AsyncSession, events: Sequence[MessageReceived | MessageEdited]
) -> set[tuple[uuid.UUID, str]]:
    """Insert the keys of every stored message at once; returns those that were new.

    A key seen twice in the batch is inserted from its first event, which `_store` then
    treats as the new one; the later events find the key, as they would one by one.
    """
    rows: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
    for event in events:
        key = (deal_id_of(event), event.message_id)
        if key not in rows:
            rows[key] = {
                "deal_id": key[0],
                "message_id": event.message_id,
                "sort_key": telegram_message_key(event.message_id),
                "direction": direction_of(event.message, event.owner_user_id),
                "source": "live",
                "state": "present",
                "deleted": False,
                "sent_at": event.message.date,
                "edit_date": event.message.edit_date,
            }
    if not rows:
        return set()
    columns = {name: [row[name] for row in rows.values()] for name in _KEY_INSERTED}
    inserted = await session.execute(_INSERT_KEYS, columns)
    return {(row.deal_id, row.message_id) for row in inserted}


async def _store(
    session: AsyncSession,
    state: _Touched,
    event: MessageReceived | MessageEdited,
    new_keys: set[tuple[uuid.UUID, str]],
) -> None:
    """A message, or an edit of it (which stores the message when it came first)."""
    deal, message = state.deal, event.message
    sort_key = telegram_message_key(event.message_id)
    direction = direction_of(message, event.owner_user_id)
    if deal.synced_at is None:
        deal.synced_at = utcnow()
        deal.sync_status = "synced"
    if (deal.id, event.message_id) in new_keys:
        new_keys.discard((deal.id, event.message_id))
        deal.total_messages += 1
        if direction == "incoming" and _above(sort_key, deal.read_horizon_key):
            deal.unread_count += 1
        if _above(sort_key, deal.last_message_key):
            _set_last(deal, event)
        if direction == "outgoing":
            _move_horizon(state, sort_key, event.message_id)
        return
    row = (
        await session.execute(
            select(MessageKey.state, MessageKey.deleted, MessageKey.edit_date).where(
                MessageKey.deal_id == deal.id, MessageKey.message_id == event.message_id
            )
        )
    ).one()
    where = (MessageKey.deal_id == deal.id, MessageKey.message_id == event.message_id)
    if row.state == "tombstone":
        # Deleted before it arrived: stored now for the record, but it stays deleted.
        await session.execute(
            update(MessageKey)
            .where(*where)
            .values(
                state="present",
                direction=direction,
                sent_at=message.date,
                edit_date=message.edit_date,
            )
        )
        if direction == "outgoing":
            _move_horizon(state, sort_key, event.message_id)
        return
    if message.edit_date is not None and (
        row.edit_date is None or message.edit_date > row.edit_date
    ):
        await session.execute(update(MessageKey).where(*where).values(edit_date=message.edit_date))
        if not row.deleted and deal.last_message_key == sort_key:
            _set_last(deal, event)


async def _delete(session: AsyncSession, state: _Touched, message_id: str) -> None:
    deal = state.deal
    sort_key = telegram_message_key(message_id)
    tombstone = await session.scalar(
        insert(MessageKey)
        .values(
            deal_id=deal.id,
            message_id=message_id,
            sort_key=sort_key,
            direction="incoming",  # unknown until the message comes; a tombstone counts nowhere
            source="live",
            state="tombstone",
            deleted=True,
        )
        .on_conflict_do_nothing()
        .returning(MessageKey.message_id)
    )
    if tombstone is not None:
        return
    row = (
        await session.execute(
            update(MessageKey)
            .where(
                MessageKey.deal_id == deal.id,
                MessageKey.message_id == message_id,
                MessageKey.deleted.is_(False),
            )
            .values(deleted=True)
            .returning(MessageKey.direction, MessageKey.source)
        )
    ).one_or_none()
    if row is None:
        return
    deal.total_messages -= 1
    if (
        row.direction == "incoming"
        and row.source == "live"
        and _above(sort_key, deal.read_horizon_key)
    ):
        deal.unread_count -= 1
    if deal.last_message_key == sort_key:
        state.refresh_preview = True


def _set_last(deal: DealRow, event: MessageReceived | MessageEdited) -> None:
    deal.last_message_id = event.message_id
    deal.last_message_key = telegram_message_key(event.message_id)
    deal.last_message_at = event.message.date
    deal.last_message = preview_of(event.message, event.owner_user_id).model_dump(mode="json")


def _move_horizon(state: _Touched, sort_key: str, message_id: str) -> None:
    """An outgoing message reads everything before it, as the owner's own client does.

    Unread is then recounted once, at the end of the batch, from the message keys.
    """
    deal = state.deal
    if _above(sort_key, deal.read_horizon_key):
        deal.read_horizon_key = sort_key
        deal.read_up_to = message_id
        state.recount_unread = True


async def _count_unread(session: AsyncSession, deal_id: uuid.UUID, horizon: str | None) -> int:
    statement = select(func.count()).where(
        MessageKey.deal_id == deal_id,
        MessageKey.direction == "incoming",
        MessageKey.source == "live",
        MessageKey.deleted.is_(False),
    )
    if horizon is not None:
        statement = statement.where(MessageKey.sort_key > horizon)
    return int(await session.scalar(statement) or 0)


async def _refresh_preview(session: AsyncSession, deal: DealRow, load: PreviewLoader) -> None:
    """The newest message was deleted: the preview falls back to the newest one left."""
    row = (
        await session.execute(
            select(MessageKey.message_id, MessageKey.sort_key, MessageKey.sent_at)
            .where(
                MessageKey.deal_id == deal.id,
                MessageKey.state == "present",
                MessageKey.deleted.is_(False),
            )
            .order_by(MessageKey.sort_key.desc())
            .limit(1)
        )
    ).one_or_none()
    preview = await load(deal.id, row.sort_key) if row is not None else None
    if row is None or preview is None:
        deal.last_message_id = deal.last_message_key = None
        deal.last_message_at = deal.last_message = None
        return
    deal.last_message_id = row.message_id
    deal.last_message_key = row.sort_key
    deal.last_message_at = row.sent_at
    deal.last_message = preview.model_dump(mode="json")


def _above(sort_key: str, other: str | None) -> bool:
    return other is None or sort_key > other
