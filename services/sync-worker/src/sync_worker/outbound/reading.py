"""`deal.mark_read`: move the read horizon, recount unread, and tell Telegram.

The horizon only moves forward (to the given message, by default the newest one), and the
unread count is recounted from `message_key` under the deal's row lock. Telegram is told with
`readBusinessMessage` for the newest incoming message at or below the horizon, outside the
transaction, and only when the connection is enabled and may read messages; the deal records
whether Telegram accepted it or why not (`no_right`, `connection_disabled`, `chat_inactive`
or Telegram's own text).
"""

import re
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import transaction
from common.events import DealMarkRead, DealRead, ReadSync, utcnow
from common.ids import telegram_message_key
from common.models import BusinessConnection, Deal, MessageKey
from sync_worker.outbound.botapi import TelegramRefused
from sync_worker.outbound.resources import Outbound

# Telegram refuses to mark messages read in a chat silent for 24 hours.
_CHAT_INACTIVE: Final = re.compile(r"inactive|24 ?hours?|not active", re.IGNORECASE)

SyncStatus = Literal["accepted", "refused", "pending"]


@dataclass(frozen=True)
class _Plan:
    deal_id: uuid.UUID
    owner_user_id: str | None
    business_connection_id: str | None
    chat_id: str | None
    horizon_key: str | None
    read_up_to: str | None
    unread_count: int
    target: str | None  # message id to pass to readBusinessMessage
    status: SyncStatus | None
    reason: str | None


async def mark_read(outbound: Outbound, command: DealMarkRead) -> None:
    async with transaction(outbound.sessions) as session:
        plan = await _record_horizon(session, command)
    if plan is None:
        return
    status, reason = plan.status, plan.reason
    if status == "pending" and plan.target is not None:
        try:
            await outbound.bot.call(
                "readBusinessMessage",
                {
                    "business_connection_id": plan.business_connection_id,
                    "chat_id": int(plan.chat_id or 0),
                    "message_id": int(plan.target),
                },
                pace=outbound.read_pace,
                chat=plan.chat_id,
            )
            status, reason = "accepted", None
        except TelegramRefused as error:
            status, reason = "refused", refusal_reason(error.reason)
        async with transaction(outbound.sessions) as session:
            await session.execute(
                update(Deal)
                .where(Deal.id == plan.deal_id, Deal.read_horizon_key == plan.horizon_key)
                .values(read_sync_status=status, read_sync_reason=reason, read_sync_at=utcnow())
            )
    await outbound.publish(
        DealRead(
            deal_id=plan.deal_id,
            owner_user_id=plan.owner_user_id,
            business_connection_id=plan.business_connection_id,
            chat_id=plan.chat_id,
            read_up_to=plan.read_up_to,
            unread_count=plan.unread_count,
            read_sync=ReadSync(status=status, reason=reason),
        )
    )


def refusal_reason(description: str) -> str:
    return "chat_inactive" if _CHAT_INACTIVE.search(description) else description


async def _record_horizon(session: AsyncSession, command: DealMarkRead) -> _Plan | None:
    deal = await session.get(Deal, command.deal_id, with_for_update=True)
    if deal is None:
        return None
    before = (deal.read_horizon_key, deal.unread_count)
    requested = await _requested(session, deal, command.message_id)
    if requested is not None and (
        deal.read_horizon_key is None or requested[1] > deal.read_horizon_key
    ):
        deal.read_up_to, deal.read_horizon_key = requested
    unread = await _count_unread(session, deal.id, deal.read_horizon_key)
    deal.unread_count = unread
    if (deal.read_horizon_key, unread) != before:
        deal.version += 1
    target = await _newest_incoming(session, deal) if deal.source == "telegram" else None
    status: SyncStatus | None = None
    reason: str | None = None
    if target is not None:
        reason = await _refusal(session, deal.business_connection_id)
        status = "refused" if reason else "pending"
        deal.read_sync_status, deal.read_sync_reason = status, reason
        deal.read_sync_at = utcnow()
    return _Plan(
        deal_id=deal.id,
        owner_user_id=_str(deal.owner_user_id),
        business_connection_id=deal.business_connection_id,
        chat_id=_str(deal.chat_id),
        horizon_key=deal.read_horizon_key,
        read_up_to=deal.read_up_to,
        unread_count=unread,
        target=target,
        status=status,
        reason=reason,
    )


async def _requested(
    session: AsyncSession, deal: Deal, message_id: str | None
) -> tuple[str, str] | None:
    """(message id, sort key) of the requested horizon, by default the newest message."""
    statement = select(MessageKey.message_id, MessageKey.sort_key).where(
        MessageKey.deal_id == deal.id, MessageKey.state == "present"
    )
    if message_id is None:
        row = (
            await session.execute(statement.order_by(MessageKey.sort_key.desc()).limit(1))
        ).one_or_none()
    else:
        row = (
            await session.execute(statement.where(MessageKey.message_id == message_id))
        ).one_or_none()
        if row is None and deal.source == "telegram" and message_id.isdigit():
            return message_id, telegram_message_key(message_id)
    return (row.message_id, row.sort_key) if row is not None else None


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


async def _newest_incoming(session: AsyncSession, deal: Deal) -> str | None:
    if deal.read_horizon_key is None or deal.chat_id is None:
        return None
    message_id: str | None = await session.scalar(
        select(MessageKey.message_id)
        .where(
            MessageKey.deal_id == deal.id,
            MessageKey.direction == "incoming",
            MessageKey.state == "present",
            MessageKey.deleted.is_(False),
            MessageKey.sort_key <= deal.read_horizon_key,
        )
        .order_by(MessageKey.sort_key.desc())
        .limit(1)
    )
    return message_id


async def _refusal(session: AsyncSession, connection_id: str | None) -> str | None:
    connection = await session.get(BusinessConnection, connection_id) if connection_id else None
    if connection is None or not connection.is_enabled or connection.status == "disabled":
        return "connection_disabled"
    if not connection.rights.get("can_read_messages"):
        return "no_right"
    return None


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)
