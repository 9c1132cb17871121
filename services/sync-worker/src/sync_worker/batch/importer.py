"""Importing one upstream chat: its customer, its messages (newest first) and its deal.

Every message page is written to DynamoDB first (idempotent puts), then one transaction,
fenced by the lease, inserts the message keys (`ON CONFLICT DO NOTHING` decides what is new),
moves the deal's counters for the new keys only, and saves the page's checkpoint. A crash
anywhere repeats at most the last page, and repeating it changes nothing.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import transaction
from common.dynamo import Item, to_attributes
from common.events import CustomerImported, DealUpdated, Event, MessagePreview
from common.ids import customer_id_for_external, deal_id_for_external, imported_message_key
from common.messages import isoformat, preview_text
from common.models import Customer, Deal, SyncRetryChat, SyncRun
from sync_worker.batch.client import Chat, ExternalApi, Message, MessagePage
from sync_worker.batch.lease import Lease, checkpoint_merge, checkpoint_without, update_run

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

log = structlog.get_logger(__name__)

Publish = Callable[[Event], Awaitable[None]]
# The run columns that move its checkpoint past a chat, given the checkpoint expression so
# far; written by the transaction that finishes the chat.
Advance = Callable[[Any], dict[str, Any]]

_BATCH_SIZE = 25
_BATCH_ATTEMPTS = 10


class Notices:
    """Realtime notifications sent beside the import instead of in its path; best effort,
    since the state they announce is committed and readable anyway."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._sending: set[asyncio.Task[None]] = set()

    def send(self, event: Event) -> None:
        task = asyncio.create_task(self._send(event))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def flush(self) -> None:
        await asyncio.gather(*self._sending)

    async def _send(self, event: Event) -> None:
        try:
            await self._publish(event)
        except Exception as error:
            log.warning("event not published", type=getattr(event, "type", "?"), error=repr(error))


@dataclass(frozen=True)
class Deps:
    sessions: async_sessionmaker[AsyncSession]
    dynamo: "DynamoDBClient"
    table: str
    api: ExternalApi
    publish: Publish
    page_size: int = 20
    message_page_size: int = 100
    notices: Notices = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "notices", Notices(self.publish))


@dataclass(frozen=True)
class ImportedCustomer:
    id: uuid.UUID
    external_id: str
    name: str
    avatar_url: str | None


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
class Prepared:
    """What can be done for a chat ahead of its turn, since it is idempotent: the customer,
    the first message page fetched and its items written to DynamoDB."""

    customer: ImportedCustomer
    stop_key: str | None
    page: MessagePage
    wanted: list[Message]
    done: bool


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
    await _put_items(deps, _items(chat, customer, wanted))
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
        progress = await _commit_page(
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
        await _put_items(deps, _items(chat, ready.customer, wanted))


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


@dataclass(frozen=True)
class Ready:
    """A chat whose whole import came in its first page: it commits in a group."""

    chat: Chat
    prepared: Prepared
    progress: dict[str, Any]


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
    for event in events:
        deps.notices.send(event)


async def _commit_page(
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
    return _Written(progress, len(fresh), _deal_updated(row) if changed else None)


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


def _items(chat: Chat, customer: ImportedCustomer, messages: list[Message]) -> list[Item]:
    deal_id = str(deal_id_for_external(chat.id))
    return [_item(deal_id, chat, customer, message) for message in messages]


def _item(deal_id: str, chat: Chat, customer: ImportedCustomer, message: Message) -> Item:
    """The message item, with the attributes and formats of `common.messages`."""
    incoming = message.direction == "incoming"
    if incoming:
        sender: dict[str, str] | None = {"id": customer.external_id, "name": customer.name}
    else:
        sender = {"id": chat.owner_id, "name": ""} if chat.owner_id else None
    return {
        "deal_id": deal_id,
        "sk": imported_message_key(message.created_at, message.id),
        "message_id": message.id,
        "chat_id": chat.id,
        "business_connection_id": None,
        "direction": message.direction,
        "sent_by": "customer" if incoming else "owner",
        "sender": sender,
        "date": isoformat(message.created_at),
        "source": "imported",
        "reply_to_message_id": None,
        "media": None,
        "text": message.text,
        "entities": [],
        "caption": None,
        "caption_entities": [],
        "edit_date": None,
        "edit_ts": 0,
    }


def _deal_updated(deal: Any) -> DealUpdated:
    return DealUpdated(
        deal_id=deal.id,
        owner_user_id=str(deal.owner_user_id) if deal.owner_user_id is not None else None,
        version=deal.version,
        unread_count=deal.unread_count,
        total_messages=deal.total_messages,
        last_message_id=deal.last_message_id,
        last_message_at=deal.last_message_at,
        last_message=MessagePreview.model_validate(deal.last_message)
        if deal.last_message
        else None,
    )


async def _put_items(deps: Deps, items: list[Item]) -> None:
    chunks = [items[start : start + _BATCH_SIZE] for start in range(0, len(items), _BATCH_SIZE)]
    await asyncio.gather(*(_put_chunk(deps, chunk) for chunk in chunks))


async def _put_chunk(deps: Deps, items: list[Item]) -> None:
    requests: list[Any] = [{"PutRequest": {"Item": to_attributes(item)}} for item in items]
    for attempt in range(_BATCH_ATTEMPTS):
        response = await deps.dynamo.batch_write_item(RequestItems={deps.table: requests})
        requests = list(response.get("UnprocessedItems", {}).get(deps.table, []))
        if not requests:
            return
        await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
    raise RuntimeError(f"DynamoDB left {len(requests)} items unprocessed after retries")
