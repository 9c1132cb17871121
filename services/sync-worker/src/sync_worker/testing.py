"""Test support for the live path (imported by tests only, like `common.testing`): events built
as telegram-ingest builds them from Telegram updates, fresh stores, and readers of the state
the worker leaves in PostgreSQL and DynamoDB."""

import os
import uuid
from typing import TYPE_CHECKING, Any

import aio_pika
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.dynamo import ensure_messages_table, from_attributes, to_attributes
from common.events import (
    BusinessConnection,
    ConnectionUpdated,
    MediaDescriptor,
    MessageEdited,
    MessageReceived,
    MessagesDeleted,
    TelegramChat,
    TelegramMessage,
    TelegramUser,
)
from common.models import Customer, Deal, MessageKey
from common.settings import Settings
from sync_worker.live import Stores
from sync_worker.store import LiveEvent

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

OWNER = "111111111"


def event_from_update(update: dict[str, Any], owner_user_id: str = OWNER) -> LiveEvent:
    """The event telegram-ingest publishes for a Telegram update."""
    if "business_connection" in update:
        raw = update["business_connection"]
        return ConnectionUpdated(
            owner_user_id=raw["user"]["id"],
            update_id=update["update_id"],
            business_connection_id=raw["id"],
            raw_update=update,
            connection=BusinessConnection(
                id=raw["id"],
                user=TelegramUser.model_validate(raw["user"]),
                user_chat_id=raw["user_chat_id"],
                date=raw["date"],
                is_enabled=raw["is_enabled"],
                rights=raw.get("rights", {}),
            ),
        )
    if "deleted_business_messages" in update:
        raw = update["deleted_business_messages"]
        return MessagesDeleted(
            owner_user_id=owner_user_id,
            update_id=update["update_id"],
            business_connection_id=raw["business_connection_id"],
            raw_update=update,
            chat_id=raw["chat"]["id"],
            chat=TelegramChat.model_validate(raw["chat"]),
            message_ids=raw["message_ids"],
        )
    edited = "edited_business_message" in update
    raw = update["edited_business_message" if edited else "business_message"]
    kind = MessageEdited if edited else MessageReceived
    return kind(
        owner_user_id=owner_user_id,
        update_id=update["update_id"],
        business_connection_id=raw["business_connection_id"],
        raw_update=update,
        chat_id=raw["chat"]["id"],
        message_id=raw["message_id"],
        message=telegram_message(raw),
    )


def telegram_message(raw: dict[str, Any]) -> TelegramMessage:
    media = None
    if raw.get("photo"):
        largest = max(raw["photo"], key=lambda size: size["width"] * size["height"])
        media = MediaDescriptor(kind="photo", **largest)
    return TelegramMessage(
        message_id=raw["message_id"],
        chat=TelegramChat.model_validate(raw["chat"]),
        sender=TelegramUser.model_validate(raw["from"]) if "from" in raw else None,
        sender_business_bot=raw.get("sender_business_bot"),
        date=raw["date"],
        edit_date=raw.get("edit_date"),
        text=raw.get("text"),
        entities=raw.get("entities", []),
        caption=raw.get("caption"),
        caption_entities=raw.get("caption_entities", []),
        media=media,
        reply_to_message_id=raw.get("reply_to_message", {}).get("message_id"),
    )


async def new_stores(
    sessions: async_sessionmaker[AsyncSession], dynamo: "DynamoDBClient"
) -> Stores:
    """A fresh messages table, so no test sees another's items (dynalite creates in ~ms)."""
    table = f"messages_{uuid.uuid4().hex[:12]}"
    await ensure_messages_table(dynamo, table)
    return Stores(sessions, dynamo, table)


async def items_of(stores: Stores, deal_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every item of a deal's partition (messages and versions), in sort order."""
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
        page = await stores.dynamo.query(
            TableName=stores.table,
            KeyConditionExpression="deal_id = :d",
            ExpressionAttributeValues=to_attributes({":d": str(deal_id)}),
            ConsistentRead=True,
            **extra,
        )
        items.extend(from_attributes(item) for item in page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


async def deal_of(stores: Stores, deal_id: uuid.UUID) -> Deal | None:
    async with stores.sessions() as session:
        deal: Deal | None = await session.get(Deal, deal_id)
        return deal


async def keys_of(stores: Stores, deal_id: uuid.UUID) -> list[MessageKey]:
    async with stores.sessions() as session:
        rows = await session.scalars(
            select(MessageKey).where(MessageKey.deal_id == deal_id).order_by(MessageKey.sort_key)
        )
        return list(rows)


async def customer_of(stores: Stores, customer_id: uuid.UUID) -> Customer | None:
    async with stores.sessions() as session:
        customer: Customer | None = await session.get(Customer, customer_id)
        return customer


def counted_from_items(items: list[dict[str, Any]], horizon: str | None) -> tuple[int, int]:
    """(total, unread) recounted from the DynamoDB items alone."""
    stored = [item for item in items if item["sk"].startswith("m#") and "date" in item]
    live = [item for item in stored if not item.get("deleted")]
    unread = [
        item
        for item in live
        if item["direction"] == "incoming" and (horizon is None or item["sk"] > horizon)
    ]
    return len(live), len(unread)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a `sync-worker` process needs to use the test's resources."""
    return {
        **os.environ,
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": settings.database_url or "",
        "RABBITMQ_URL": settings.rabbitmq_url.get_secret_value(),
        "AWS_ENDPOINT_URL_DYNAMODB": settings.aws_endpoint_url_dynamodb or "",
        "AWS_REGION": settings.aws_region,
        "DYNAMODB_MESSAGES_TABLE": settings.dynamodb_messages_table,
        "BIND_HOST": "127.0.0.1",
        **extra,
    }


async def purge_queues(url: str, names: list[str]) -> None:
    """Empty queues other tests' events may have reached: every catalogue queue is declared
    at start-up by every service, and a test run shares one vhost."""
    connection = await aio_pika.connect(url)
    async with connection:
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.get_queue(name, ensure=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                continue
            await queue.purge()
