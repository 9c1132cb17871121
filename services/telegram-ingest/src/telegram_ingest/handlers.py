"""aiogram handlers for the four business update types: resolve the owner, map, publish.

Dependencies arrive as the keyword data `Ingest.handle` propagates with the event (`owners`,
`publisher`, `raw_update`, and `event_update`, named as aiogram names it); the mapping itself
is in `mapping`, pure.
"""

from typing import Any, Literal

from aiogram import Router
from aiogram import types as tg

from common.events import UpdateUnparsed
from telegram_ingest import mapping
from telegram_ingest.metrics import UPDATES_PARKED
from telegram_ingest.owners import Owners
from telegram_ingest.publishing import Publisher

Handled = Literal["published", "parked"]


async def park(publisher: Publisher, update_id: int, error: str, raw: dict[str, Any]) -> Handled:
    """Keep an update we cannot turn into an event where a person can look at it."""
    await publisher.publish(UpdateUnparsed(update_id=update_id, error=error, raw_update=raw))
    UPDATES_PARKED.inc()
    return "parked"


async def on_business_connection(
    connection: tg.BusinessConnection,
    event_update: tg.Update,
    owners: Owners,
    publisher: Publisher,
    raw_update: dict[str, Any],
) -> Handled:
    owners.remember(connection.id, connection.user.id)
    event = mapping.connection_updated(
        connection, update_id=event_update.update_id, raw_update=raw_update
    )
    await publisher.publish(event)
    return "published"


async def on_business_message(
    message: tg.Message,
    event_update: tg.Update,
    owners: Owners,
    publisher: Publisher,
    raw_update: dict[str, Any],
) -> Handled:
    if not message.business_connection_id:
        return await park(
            publisher, event_update.update_id, "no business_connection_id", raw_update
        )
    owner = await owners.owner_of(message.business_connection_id)
    event = mapping.message_received(
        message, owner_user_id=owner, update_id=event_update.update_id, raw_update=raw_update
    )
    await publisher.publish(event)
    return "published"


async def on_edited_business_message(
    message: tg.Message,
    event_update: tg.Update,
    owners: Owners,
    publisher: Publisher,
    raw_update: dict[str, Any],
) -> Handled:
    if not message.business_connection_id:
        return await park(
            publisher, event_update.update_id, "no business_connection_id", raw_update
        )
    owner = await owners.owner_of(message.business_connection_id)
    event = mapping.message_edited(
        message, owner_user_id=owner, update_id=event_update.update_id, raw_update=raw_update
    )
    await publisher.publish(event)
    return "published"


async def on_deleted_business_messages(
    deleted: tg.BusinessMessagesDeleted,
    event_update: tg.Update,
    owners: Owners,
    publisher: Publisher,
    raw_update: dict[str, Any],
) -> Handled:
    owner = await owners.owner_of(deleted.business_connection_id)
    event = mapping.messages_deleted(
        deleted, owner_user_id=owner, update_id=event_update.update_id, raw_update=raw_update
    )
    await publisher.publish(event)
    return "published"


def business_router() -> Router:
    """A fresh Router each time: aiogram attaches a router to one Dispatcher only."""
    router = Router(name="business")
    router.business_connection.register(on_business_connection)
    router.business_message.register(on_business_message)
    router.edited_business_message.register(on_edited_business_message)
    router.deleted_business_messages.register(on_deleted_business_messages)
    return router
