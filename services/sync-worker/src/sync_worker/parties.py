"""The parties of a chat in PostgreSQL: the business account owner, the business connection
and the customer. Each rule keeps the newest Telegram `date`, so arrival order does not matter.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, case, func, or_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import (
    ConnectionUpdated,
    MessageEdited,
    MessageReceived,
    MessagesDeleted,
    TelegramChat,
)
from common.ids import customer_id_for_telegram
from common.models import BusinessConnection, Customer, TelegramUser

ChatEvent = MessageReceived | MessageEdited | MessagesDeleted
LiveEvent = ConnectionUpdated | ChatEvent


async def save_owners(session: AsyncSession, events: Sequence[LiveEvent]) -> None:
    named: dict[int, dict[str, Any]] = {}
    known: set[int] = set()
    for event in events:
        owner = int(event.owner_user_id)
        known.add(owner)
        if isinstance(event, ConnectionUpdated):
            user = event.connection.user
            named[int(user.id)] = {
                "first_name": user.first_name,
                "last_name": user.last_name,
                "username": user.username,
            }
            known.add(int(user.id))
    for owner in sorted(known):
        statement = insert(TelegramUser).values(id=owner, **named.get(owner, {}))
        if owner in named:
            statement = statement.on_conflict_do_update(
                index_elements=[TelegramUser.id], set_=named[owner]
            )
        else:
            statement = statement.on_conflict_do_nothing()
        await session.execute(statement)


async def save_connections(session: AsyncSession, events: Sequence[LiveEvent]) -> None:
    """Apply connection updates; a connection only seen in a message is created `pending`.

    One pass in id order (not pending ones first), so two batches never wait on each other's
    new rows in opposite orders.
    """
    updates: dict[str, list[ConnectionUpdated]] = {}
    owners: dict[str, int] = {}
    for event in events:
        if isinstance(event, ConnectionUpdated):
            updates.setdefault(event.connection.id, []).append(event)
        else:
            owners[event.business_connection_id] = int(event.owner_user_id)
    for connection_id in sorted(updates.keys() | owners.keys()):
        if connection_id not in updates:
            await session.execute(
                insert(BusinessConnection)
                .values(id=connection_id, owner_user_id=owners[connection_id], status="pending")
                .on_conflict_do_nothing()
            )
            continue
        for event in sorted(updates[connection_id], key=_connection_order):
            await _apply_connection(session, event)


def _connection_order(event: ConnectionUpdated) -> tuple[datetime, int]:
    return event.connection.date, event.update_id


async def _apply_connection(session: AsyncSession, event: ConnectionUpdated) -> None:
    """Newest `(date, update_id)` wins; `connected_at` is the earliest.

    Telegram keeps a connection's `date` when it is disabled or enabled again, so at equal
    dates the higher `update_id` (Telegram numbers updates in order) is the newer state.
    """
    connection = event.connection
    statement = insert(BusinessConnection).values(
        id=connection.id,
        owner_user_id=int(connection.user.id),
        user_chat_id=int(connection.user_chat_id),
        is_enabled=connection.is_enabled,
        rights=dict(connection.rights),
        status="active" if connection.is_enabled else "disabled",
        source_date=connection.date,
        source_update_id=event.update_id,
        connected_at=connection.date if connection.is_enabled else None,
        disabled_at=None if connection.is_enabled else connection.date,
    )
    table, new = BusinessConnection, statement.excluded
    newer = or_(
        table.source_date.is_(None),
        table.source_date < new.source_date,
        and_(
            table.source_date == new.source_date,
            or_(
                table.source_update_id.is_(None),
                table.source_update_id <= new.source_update_id,
            ),
        ),
    )
    fields = (
        "owner_user_id",
        "user_chat_id",
        "is_enabled",
        "rights",
        "status",
        "disabled_at",
        "source_update_id",
    )
    changes: dict[str, Any] = {
        name: case((newer, getattr(new, name)), else_=getattr(table, name)) for name in fields
    }
    changes["source_date"] = func.greatest(table.source_date, new.source_date)
    changes["connected_at"] = func.least(table.connected_at, new.connected_at)
    changes["updated_at"] = func.now()
    await session.execute(
        statement.on_conflict_do_update(index_elements=[BusinessConnection.id], set_=changes)
    )


_CUSTOMER: Final = Customer.metadata.tables[Customer.__tablename__]
_NEW_CUSTOMER: Final = insert(_CUSTOMER)
# Run with one parameter set per customer (executemany): one prepared statement for every
# batch size, where a multi-row VALUES would be compiled and planned for each.
_SAVE_DATED_CUSTOMER: Final = _NEW_CUSTOMER.on_conflict_do_update(
    index_elements=[_CUSTOMER.c.id],
    set_={
        "name": _NEW_CUSTOMER.excluded.name,
        "first_name": _NEW_CUSTOMER.excluded.first_name,
        "last_name": _NEW_CUSTOMER.excluded.last_name,
        "username": _NEW_CUSTOMER.excluded.username,
        "source_date": _NEW_CUSTOMER.excluded.source_date,
        "updated_at": func.now(),
    },
    where=or_(
        _CUSTOMER.c.source_date.is_(None),
        _CUSTOMER.c.source_date <= _NEW_CUSTOMER.excluded.source_date,
    ),
)
_SAVE_UNDATED_CUSTOMER: Final = _NEW_CUSTOMER.on_conflict_do_nothing()


async def save_customers(session: AsyncSession, events: Sequence[ChatEvent]) -> None:
    """Customer names come from the newest dated update; a delete only creates the row."""
    newest: dict[str, tuple[TelegramChat, datetime | None]] = {}
    for event in events:
        chat, date = _chat_and_date(event)
        current = newest.get(chat.id)
        if current is None or (date is not None and (current[1] is None or date >= current[1])):
            newest[chat.id] = (chat, date)
    rows = sorted(
        (
            {
                "id": customer_id_for_telegram(chat_id),
                "source": "telegram",
                "external_id": chat_id,
                "name": _full_name(chat),
                "first_name": chat.first_name,
                "last_name": chat.last_name,
                "username": chat.username,
                "source_date": date,
            }
            for chat_id, (chat, date) in newest.items()
        ),
        key=lambda row: str(row["id"]),
    )
    dated = [row for row in rows if row["source_date"] is not None]
    if dated:
        await session.execute(_SAVE_DATED_CUSTOMER, dated)
    undated = [row for row in rows if row["source_date"] is None]
    if undated:
        await session.execute(_SAVE_UNDATED_CUSTOMER, undated)


def _chat_and_date(event: ChatEvent) -> tuple[TelegramChat, datetime | None]:
    if isinstance(event, MessagesDeleted):
        return event.chat, None
    return event.message.chat, event.message.edit_date or event.message.date


def _full_name(chat: TelegramChat) -> str:
    parts = [part for part in (chat.first_name, chat.last_name) if part]
    return " ".join(parts) or chat.title or chat.username or str(chat.id)
