"""Importing one upstream chat: its customer, its messages (newest first) and its deal.

Every message page is written to DynamoDB first (idempotent puts), then one transaction,
fenced by the lease, inserts the message keys (`ON CONFLICT DO NOTHING` decides what is new),
moves the deal's counters for the new keys only, and saves the page's checkpoint. A crash
anywhere repeats at most the last page, and repeating it changes nothing.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import transaction
from common.dynamo import Item, to_attributes
from common.events import CustomerImported, DealUpdated, Event, MessagePreview, utcnow
from common.ids import customer_id_for_external, deal_id_for_external, imported_message_key
from common.messages import isoformat, preview_text
from common.models import Customer, Deal, MessageKey, SyncRetryChat, SyncRun
from sync_worker.batch.client import Chat, ExternalApi, Message, UpstreamNotFound
from sync_worker.batch.lease import Lease, fenced

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

log = structlog.get_logger(__name__)

Publish = Callable[[Event], Awaitable[None]]
# Moves the run's checkpoint past a chat, inside the transaction that finishes the chat.
Advance = Callable[[AsyncSession, SyncRun], Awaitable[None]]

_BATCH_SIZE = 25
_BATCH_ATTEMPTS = 10


@dataclass(frozen=True)
class Deps:
    sessions: async_sessionmaker[AsyncSession]
    dynamo: "DynamoDBClient"
    table: str
    api: ExternalApi
    publish: Publish
    page_size: int = 20
    message_page_size: int = 100


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


async def import_chat(
    deps: Deps,
    lease: Lease,
    chat: Chat,
    progress: dict[str, Any],
    *,
    max_date: datetime | None,
    advance: Advance,
) -> int:
    """Import `chat` from where `progress` (its checkpoint) says; returns new messages."""
    customer = await ensure_customer(deps, chat)
    await deps.publish(
        CustomerImported(
            customer_id=customer.id,
            external_id=customer.external_id,
            avatar_url=customer.avatar_url,
            owner_user_id=chat.owner_id,
        )
    )
    if not progress["started"]:
        progress = await _start(deps, lease, chat, customer, progress)
    deal_id = deal_id_for_external(chat.id)
    while True:
        page = await deps.api.list_messages(chat.id, progress["cursor"], deps.message_page_size)
        wanted: list[Message] = []
        stopped = False
        for message in {m.id: m for m in page.items}.values():
            key = imported_message_key(message.created_at, message.id)
            too_old = max_date is not None and message.created_at < max_date
            if too_old or (progress["stop_key"] is not None and key <= progress["stop_key"]):
                stopped = True
                break
            wanted.append(message)
        done = stopped or page.next_cursor is None
        await _put_items(deps, [_item(deal_id, chat, customer, m) for m in wanted])
        progress = await _commit_page(
            deps, lease, chat, wanted, progress, page.next_cursor, advance if done else None
        )
        if done:
            return int(progress["imported"])


async def ensure_customer(deps: Deps, chat: Chat) -> ImportedCustomer:
    """The chat's customer, fetched and stored when new; a stored one is never overwritten."""
    customer_id = customer_id_for_external(chat.customer_id)
    async with deps.sessions() as session:
        stored = await session.get(Customer, customer_id)
    if stored is None:
        fetched = await deps.api.get_customer(chat.customer_id)
        async with transaction(deps.sessions) as session:
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
            )
            stored = await session.get_one(Customer, customer_id)
    return ImportedCustomer(stored.id, stored.external_id, stored.name, stored.avatar_url)


async def _start(
    deps: Deps, lease: Lease, chat: Chat, customer: ImportedCustomer, progress: dict[str, Any]
) -> dict[str, Any]:
    """Create or adopt the deal; remember where an earlier complete import stopped."""
    deal_id = deal_id_for_external(chat.id)
    owner = _owner(chat)
    async with transaction(deps.sessions) as session:
        run = await fenced(session, lease)
        await session.execute(
            insert(Deal)
            .values(
                id=deal_id,
                source="external",
                external_id=chat.id,
                owner_user_id=owner,
                customer_id=customer.id,
                sync_status="partial",
            )
            .on_conflict_do_nothing(index_elements=[Deal.id])
        )
        deal = await _lock_deal(session, deal_id)
        deal.owner_user_id = owner
        deal.customer_id = customer.id
        # Only a complete earlier import bounds this one; after a partial one, walk it all.
        stop_key = deal.last_message_key if deal.sync_status == "synced" else None
        deal.sync_status = "partial"
        progress = {**progress, "started": True, "stop_key": stop_key}
        _save_chat(run, progress)
    return progress


async def _commit_page(
    deps: Deps,
    lease: Lease,
    chat: Chat,
    messages: list[Message],
    progress: dict[str, Any],
    next_cursor: str | None,
    finish: Advance | None,
) -> dict[str, Any]:
    deal_id = deal_id_for_external(chat.id)
    async with transaction(deps.sessions) as session:
        run = await fenced(session, lease)
        deal = await _lock_deal(session, deal_id)
        new: set[str] = set()
        if messages:
            inserted = await session.scalars(
                insert(MessageKey)
                .values(
                    [
                        {
                            "deal_id": deal_id,
                            "message_id": m.id,
                            "sort_key": imported_message_key(m.created_at, m.id),
                            "direction": m.direction,
                            "source": "imported",
                            "state": "present",
                            "deleted": False,
                            "sent_at": m.created_at,
                        }
                        for m in messages
                    ]
                )
                .on_conflict_do_nothing()
                .returning(MessageKey.message_id)
            )
            new = set(inserted.all())
        fresh = [m for m in messages if m.id in new]
        deal.total_messages += len(fresh)
        for message in fresh:
            key = imported_message_key(message.created_at, message.id)
            if deal.last_message_key is None or key > deal.last_message_key:
                _set_last(deal, message, key)
        run.imported_messages += len(fresh)
        progress = {
            **progress,
            "cursor": next_cursor,
            "imported": progress["imported"] + len(fresh),
        }
        if finish is None:
            _save_chat(run, progress)
            return progress
        newly_listed = deal.synced_at is None and deal.total_messages > 0
        if newly_listed:
            deal.synced_at = utcnow()
        deal.sync_status = "synced"
        changed = newly_listed or progress["imported"] > 0
        if changed:
            deal.version += 1
        run.processed_chats += 1
        # Imported: off the retry list, whichever phase found it.
        await session.execute(delete(SyncRetryChat).where(SyncRetryChat.chat_id == chat.id))
        run.checkpoint = {k: v for k, v in run.checkpoint.items() if k != "current"}
        run.chat_cursor = None
        await finish(session, run)
        await session.flush()
        await session.refresh(deal)
        event = _deal_updated(deal) if changed else None
    if event is not None:
        await publish_quietly(deps, event)
    return progress


async def _lock_deal(session: AsyncSession, deal_id: uuid.UUID) -> Deal:
    deal = await session.scalar(
        select(Deal)
        .where(Deal.id == deal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if deal is None:
        raise UpstreamNotFound(f"deal {deal_id} vanished during its import")
    return deal


def _save_chat(run: SyncRun, progress: dict[str, Any]) -> None:
    run.checkpoint = {**run.checkpoint, "current": progress}
    run.chat_cursor = progress["cursor"]


def _set_last(deal: Deal, message: Message, key: str) -> None:
    deal.last_message_id = message.id
    deal.last_message_key = key
    deal.last_message_at = message.created_at
    preview = MessagePreview(
        text=preview_text({"text": message.text}),
        direction=message.direction,
        date=message.created_at,
    )
    deal.last_message = preview.model_dump(mode="json")


def _owner(chat: Chat) -> int | None:
    if chat.owner_id is not None and chat.owner_id.isdigit():
        return int(chat.owner_id)
    if chat.owner_id is not None:
        log.warning("chat owner_id is not a Telegram user id", chat_id=chat.id)
    return None


def _item(deal_id: uuid.UUID, chat: Chat, customer: ImportedCustomer, message: Message) -> Item:
    """The message item, with the attributes and formats of `common.messages`."""
    incoming = message.direction == "incoming"
    if incoming:
        sender: dict[str, str] | None = {"id": customer.external_id, "name": customer.name}
    else:
        sender = {"id": chat.owner_id, "name": ""} if chat.owner_id else None
    return {
        "deal_id": str(deal_id),
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


def _deal_updated(deal: Deal) -> DealUpdated:
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


async def publish_quietly(deps: Deps, event: Event) -> None:
    """Realtime notifications are best effort: the state is committed and readable anyway."""
    try:
        await deps.publish(event)
    except Exception as error:
        log.warning("event not published", type=getattr(event, "type", "?"), error=repr(error))


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
