"""The reply Telegram accepted, stored as the live path stores messages (`common.messages`).

The item goes under the key Telegram's echo will use (`common.ids.telegram_message_key`) and the
message key is inserted `ON CONFLICT DO NOTHING` under the deal's row lock, so whichever of the
reply and its echo comes second changes nothing. Like an outgoing message on the live path, a
reply moves the read horizon past everything before it.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import transaction
from common.dynamo import to_attributes
from common.events import (
    DealUpdated,
    MessagePreview,
    TelegramChat,
    TelegramMessage,
    TelegramUser,
    utcnow,
)
from common.ids import telegram_message_key
from common.messages import preview_text, telegram_message_item
from common.models import Deal, MessageKey
from sync_worker.outbound.resources import Outbound
from sync_worker.store import deal_updated


@dataclass(frozen=True)
class ReplyTarget:
    deal_id: uuid.UUID
    owner_user_id: str
    business_connection_id: str
    chat_id: str


def message_from_api(result: dict[str, Any]) -> TelegramMessage:
    """The Bot API's Message (as `sendMessage` returns it), normalised like telegram-ingest."""
    reply = result.get("reply_to_message") or {}
    return TelegramMessage(
        message_id=result["message_id"],
        chat=TelegramChat.model_validate(result["chat"]),
        sender=TelegramUser.model_validate(result["from"]) if result.get("from") else None,
        sender_business_bot=(
            TelegramUser.model_validate(result["sender_business_bot"])
            if result.get("sender_business_bot")
            else None
        ),
        date=datetime.fromtimestamp(int(result["date"]), UTC),
        text=result.get("text"),
        entities=list(result.get("entities") or []),
        reply_to_message_id=reply.get("message_id"),
    )


async def store_reply(
    outbound: Outbound, target: ReplyTarget, message: TelegramMessage
) -> DealUpdated | None:
    """Store the sent message as an outgoing one; the deal's new state if it was new."""
    sort_key = telegram_message_key(message.message_id)
    item = telegram_message_item(
        deal_id=str(target.deal_id),
        sort_key=sort_key,
        business_connection_id=target.business_connection_id,
        owner_user_id=target.owner_user_id,
        message=message,
    )
    # Sent by us, so always outgoing, whoever Telegram names as the sender.
    item["direction"] = "outgoing"
    try:
        await outbound.dynamo.put_item(
            TableName=outbound.table,
            Item=to_attributes(item),
            ConditionExpression="attribute_not_exists(sk)",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
    async with transaction(outbound.sessions) as session:
        deal = await session.get(Deal, target.deal_id, with_for_update=True)
        if deal is None:
            return None
        new = await session.scalar(
            insert(MessageKey)
            .values(
                deal_id=deal.id,
                message_id=message.message_id,
                sort_key=sort_key,
                direction="outgoing",
                source="live",
                state="present",
                deleted=False,
                sent_at=message.date,
            )
            .on_conflict_do_nothing()
            .returning(MessageKey.message_id)
        )
        if new is None:
            return None
        await _count_reply(session, deal, item, message, sort_key)
        return deal_updated(deal)


async def _count_reply(
    session: AsyncSession, deal: Deal, item: dict[str, Any], message: TelegramMessage, key: str
) -> None:
    deal.total_messages += 1
    if deal.synced_at is None:
        deal.synced_at, deal.sync_status = utcnow(), "synced"
    if deal.last_message_key is None or key > deal.last_message_key:
        deal.last_message_id, deal.last_message_key = message.message_id, key
        deal.last_message_at = message.date
        preview = MessagePreview(text=preview_text(item), direction="outgoing", date=message.date)
        deal.last_message = preview.model_dump(mode="json")
    # A reply reads everything before it, as the owner's own client does.
    if deal.read_horizon_key is None or key > deal.read_horizon_key:
        deal.read_horizon_key, deal.read_up_to = key, message.message_id
        deal.unread_count = int(
            await session.scalar(
                select(func.count()).where(
                    MessageKey.deal_id == deal.id,
                    MessageKey.direction == "incoming",
                    MessageKey.source == "live",
                    MessageKey.deleted.is_(False),
                    MessageKey.sort_key > key,
                )
            )
            or 0
        )
    deal.version += 1
