"""The live path: Telegram events written to DynamoDB first, then to PostgreSQL in one
transaction. A crash anywhere repeats only idempotent steps: the DynamoDB writes are
conditional or plain puts, and the transaction decides newness by the message key.
"""

import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import transaction
from common.dynamo import Item
from common.events import ConnectionUpdated, DealUpdated, MessagePreview, MessagesDeleted
from common.ids import telegram_message_key
from common.messages import preview_text, telegram_message_item
from sync_worker import messages, store
from sync_worker.store import LiveEvent, deal_id_of

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


@dataclass(frozen=True)
class Stores:
    sessions: async_sessionmaker[AsyncSession]
    dynamo: "DynamoDBClient"
    table: str


# A seam for crash tests: runs after the DynamoDB writes, before the transaction.
after_dynamo_write: Callable[[Sequence[LiveEvent]], Awaitable[None]] | None = None


async def persist(stores: Stores, events: Sequence[LiveEvent]) -> list[DealUpdated]:
    """Write a batch of events; returns the state of every deal they touched."""
    await write_items(stores, events)
    return await commit(stores, events)


async def commit(stores: Stores, events: Sequence[LiveEvent]) -> list[DealUpdated]:
    """The PostgreSQL half, once the events' DynamoDB items are written."""
    if after_dynamo_write is not None:
        await after_dynamo_write(events)

    async def load_preview(deal_id: uuid.UUID, sort_key: str) -> MessagePreview | None:
        item = await messages.read_message(stores.dynamo, stores.table, str(deal_id), sort_key)
        return preview_from_item(item) if item else None

    async with transaction(stores.sessions) as session:
        deals = await store.apply(session, events, load_preview)
        return [store.deal_updated(deal) for deal in deals]


async def write_items(stores: Stores, events: Sequence[LiveEvent]) -> None:
    writes: list[Coroutine[Any, Any, object]] = []
    versions: list[Item] = []
    for event in events:
        if isinstance(event, MessagesDeleted):
            deal_id = str(deal_id_of(event))
            for message_id in event.message_ids:
                identity = {
                    "deal_id": deal_id,
                    "sk": telegram_message_key(message_id),
                    "message_id": message_id,
                    "chat_id": event.chat_id,
                    "business_connection_id": event.business_connection_id,
                }
                writes.append(
                    messages.write_tombstone(
                        stores.dynamo, stores.table, identity=identity, deleted_at=event.occurred_at
                    )
                )
        elif not isinstance(event, ConnectionUpdated):
            deal_id = str(deal_id_of(event))
            sort_key = telegram_message_key(event.message_id)
            item = telegram_message_item(
                deal_id=deal_id,
                sort_key=sort_key,
                business_connection_id=event.business_connection_id,
                owner_user_id=event.owner_user_id,
                message=event.message,
            )
            writes.append(messages.write_message(stores.dynamo, stores.table, item))
            if event.message.edit_date is not None:
                versions.append(
                    messages.version_item(
                        deal_id=deal_id,
                        sort_key=sort_key,
                        message=event.message,
                        raw_update=event.raw_update,
                    )
                )
    if versions:
        writes.append(messages.put_items(stores.dynamo, stores.table, versions))
    await messages.gather_limited(writes)


def preview_from_item(item: Item) -> MessagePreview | None:
    if "date" not in item:
        return None
    return MessagePreview(
        text=preview_text(item), direction=item.get("direction", "incoming"), date=item["date"]
    )
