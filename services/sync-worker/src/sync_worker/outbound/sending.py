"""`message.send`: a reply sent to Telegram at most once, and stored as Telegram will echo it.

Telegram has no idempotency key, so the request row is the guard: it is written `sending`
before `sendMessage` and moves to `sent`, `failed` or `unknown` after. A repeated request id
sends nothing new (its outcome is published again); a row found still `sending` means a worker
stopped mid-send, and it becomes `unknown` instead of being sent twice.

The returned Message is stored by `replies.store_reply`, so Telegram's echo of it is a no-op.
"""

from typing import Any, Final

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import transaction
from common.events import Event, MessageSend, MessageSendFailed, MessageSent
from common.models import BusinessConnection, Deal, SendRequest
from sync_worker.outbound.botapi import OutcomeUnknown, TelegramError
from sync_worker.outbound.replies import ReplyTarget, message_from_api, store_reply
from sync_worker.outbound.resources import Outbound

UNKNOWN_REASON: Final = "the worker stopped during the send; not resent (at most once)"
FINAL: Final = frozenset({"sent", "failed", "unknown"})


async def send(outbound: Outbound, command: MessageSend) -> None:
    async with transaction(outbound.sessions) as session:
        admitted = await _admit(session, command)
    if not isinstance(admitted, ReplyTarget):
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
            owner_user_id=target.owner_user_id or None,
            business_connection_id=target.business_connection_id,
            chat_id=target.chat_id,
            client_request_id=command.client_request_id,
            message_id=message.message_id,
            message=message,
        )
    )
    if updated is not None:
        await outbound.publish(updated)


async def _admit(session: AsyncSession, command: MessageSend) -> ReplyTarget | Event | None:
    """The chat to send to, or the outcome to publish instead of sending."""
    deal = await session.get(Deal, command.deal_id)
    if deal is None:
        return MessageSendFailed(
            deal_id=command.deal_id,
            client_request_id=command.client_request_id,
            reason="deal_not_found",
        )
    target = ReplyTarget(
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
                owner_user_id=target.owner_user_id or None,
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


def _failed(target: ReplyTarget, command: MessageSend, reason: str) -> MessageSendFailed:
    return MessageSendFailed(
        deal_id=target.deal_id,
        owner_user_id=target.owner_user_id or None,
        business_connection_id=target.business_connection_id or None,
        chat_id=target.chat_id or None,
        client_request_id=command.client_request_id,
        reason=reason,
    )
