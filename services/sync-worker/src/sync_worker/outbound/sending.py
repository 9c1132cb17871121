"""`message.send`: a reply sent to Telegram at most once, and stored as Telegram will echo it.

Telegram has no idempotency key, so the request row is the guard: it is written `sending`
before `sendMessage` and moves to `sent`, `failed` or `unknown` after. A repeated request id
sends nothing new (its outcome is published again); a row found still `sending` means a worker
stopped mid-send, and it becomes `unknown` instead of being sent twice.

The returned Message is stored under the key the live path uses (`common.ids`), with the
message key inserted `ON CONFLICT DO NOTHING`, so whichever of the reply and its echo comes
second changes nothing.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import ClientError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import transaction
from common.dynamo import to_attributes
from common.events import (
    DealUpdated,
    Event,
    MessagePreview,
    MessageSend,
    MessageSendFailed,
    MessageSent,
    TelegramChat,
    TelegramMessage,
    TelegramUser,
    utcnow,
)
from common.ids import telegram_message_key
from common.messages import preview_text, telegram_message_item
from common.models import BusinessConnection, Deal, MessageKey, SendRequest
from sync_worker.outbound.botapi import OutcomeUnknown, TelegramError
from sync_worker.outbound.resources import Outbound

UNKNOWN_REASON: Final = "the worker stopped during the send; not resent (at most once)"
FINAL: Final = frozenset({"sent", "failed", "unknown"})


@dataclass(frozen=True)
class _Target:
    deal_id: uuid.UUID
    owner_user_id: str
    business_connection_id: str
    chat_id: str


async def send(outbound: Outbound, command: MessageSend) -> None:
    async with transaction(outbound.sessions) as session:
        admitted = await _admit(session, command)
    if not isinstance(admitted, _Target):
        if admitted is not None:
            await outbound.publish(admitted)
        return
    target = admitted
    await outbound.send_pace.wait(target.chat_id)
    async with transaction(outbound.sessions) as session:
        if not await _claim(session, command):
            return  # another delivery of the same request got there first
    params: dict[str, Any] = {
        "business_connection_id": target.business_connection_id,
        "chat_id": int(target.chat_id),
        "text": command.text,
    }
    if command.reply_to_message_id is not None:
        params["reply_parameters"] = {
            "message_id": int(command.reply_to_message_id),
            "allow_sending_without_reply": True,
        }
    try:
        result = await outbound.bot.call(
            "sendMessage",
            params,
            pace=outbound.send_pace,
            chat=target.chat_id,
            idempotent=False,
            paced=True,
        )
    except TelegramError as error:
        status = "unknown" if isinstance(error, OutcomeUnknown) else "failed"
        await _finish(outbound, command, status=status, reason=error.reason)
        await outbound.publish(_failed(target, command, error.reason))
        return
    message = message_from_api(result)
    await _finish(outbound, command, status="sent", message_id=message.message_id)
    updated = await store_reply(outbound, target, message)
    await outbound.publish(
        MessageSent(
            deal_id=target.deal_id,
            owner_user_id=target.owner_user_id,
            business_connection_id=target.business_connection_id,
            chat_id=target.chat_id,
            client_request_id=command.client_request_id,
            message_id=message.message_id,
            message=message,
        )
    )
    if updated is not None:
        await outbound.publish(updated)


async def _admit(session: AsyncSession, command: MessageSend) -> _Target | Event | None:
    """The chat to send to, or the outcome to publish instead of sending."""
    deal = await session.get(Deal, command.deal_id)
    if deal is None:
        return MessageSendFailed(
            deal_id=command.deal_id,
            client_request_id=command.client_request_id,
            reason="deal_not_found",
        )
    target = _Target(
        deal_id=deal.id,
        owner_user_id=str(deal.owner_user_id or ""),
        business_connection_id=deal.business_connection_id or "",
        chat_id=str(deal.chat_id or ""),
    )
    row = await session.get(SendRequest, (deal.id, command.client_request_id), with_for_update=True)
    if row is not None and row.status == "sending":
        row.status, row.reason = "unknown", UNKNOWN_REASON
    if row is not None and row.status in FINAL:
        if row.status == "sent":
            return MessageSent(
                deal_id=deal.id,
                owner_user_id=target.owner_user_id,
                business_connection_id=target.business_connection_id,
                chat_id=target.chat_id,
                client_request_id=command.client_request_id,
                message_id=row.message_id or "",
            )
        return _failed(target, command, row.reason or row.status)
    reason = await _refusal(session, deal)
    if reason is None:
        return target
    await session.execute(
        _request_row(command, status="failed", reason=reason).on_conflict_do_update(
            index_elements=[SendRequest.deal_id, SendRequest.client_request_id],
            set_={"status": "failed", "reason": reason, "updated_at": func.now()},
        )
    )
    return _failed(target, command, reason)


async def _refusal(session: AsyncSession, deal: Deal) -> str | None:
    if deal.source != "telegram" or deal.chat_id is None or deal.business_connection_id is None:
        return "not_telegram"
    connection = await session.get(BusinessConnection, deal.business_connection_id)
    if connection is None or not connection.is_enabled or connection.status == "disabled":
        return "connection_disabled"
    if not connection.rights.get("can_reply"):
        return "no_right"
    return None


async def _claim(session: AsyncSession, command: MessageSend) -> bool:
    """Record the request `sending`; False when some delivery already did."""
    claimed = await session.scalar(
        _request_row(command, status="sending")
        .on_conflict_do_update(
            index_elements=[SendRequest.deal_id, SendRequest.client_request_id],
            set_={"status": "sending", "updated_at": func.now()},
            where=SendRequest.status == "queued",
        )
        .returning(SendRequest.client_request_id)
    )
    return claimed is not None


def _request_row(command: MessageSend, *, status: str, reason: str | None = None) -> Any:
    requested_by = command.requested_by
    return insert(SendRequest).values(
        deal_id=command.deal_id,
        client_request_id=command.client_request_id,
        text=command.text,
        reply_to_message_id=command.reply_to_message_id,
        status=status,
        reason=reason,
        requested_by=int(requested_by) if requested_by and requested_by.isdigit() else None,
    )


async def _finish(
    outbound: Outbound,
    command: MessageSend,
    *,
    status: str,
    reason: str | None = None,
    message_id: str | None = None,
) -> None:
    async with transaction(outbound.sessions) as session:
        row = await session.get(
            SendRequest, (command.deal_id, command.client_request_id), with_for_update=True
        )
        if row is not None:
            row.status, row.reason, row.message_id = status, reason, message_id


def _failed(target: _Target, command: MessageSend, reason: str) -> MessageSendFailed:
    return MessageSendFailed(
        deal_id=target.deal_id,
        owner_user_id=target.owner_user_id or None,
        business_connection_id=target.business_connection_id or None,
        chat_id=target.chat_id or None,
        client_request_id=command.client_request_id,
        reason=reason,
    )


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
    outbound: Outbound, target: _Target, message: TelegramMessage
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


def deal_updated(deal: Deal) -> DealUpdated:
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
