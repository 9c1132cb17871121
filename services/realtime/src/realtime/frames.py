"""Events into WebSocket frames: whose stream each one joins, its duplicate key, its JSON.

Pure functions. A frame is encoded once (`encode`) and the same bytes go to every recipient.
"""

from dataclasses import dataclass
from typing import Any, Final

import pydantic_core

from common.events import (
    AnyEvent,
    ConnectionUpdated,
    CustomerUpdated,
    DealEvent,
    DealRead,
    DealUpdated,
    MessageEdited,
    MessageReceived,
    MessagesDeleted,
    MessageSendFailed,
    MessageSent,
    SyncProgress,
    TelegramMessage,
)
from common.ids import deal_id_for_telegram, telegram_message_key
from common.messages import isoformat, message_view, telegram_message_item

# The stream of admin connections (whatever user's stream they opened): sync progress.
ADMINS: Final = "admins"

# Every routing key realtime turns into frames; the journal binds exactly these.
ROUTING_KEYS: Final = (
    "telegram.connection.updated",
    "telegram.message.received",
    "telegram.message.edited",
    "telegram.messages.deleted",
    "deal.updated",
    "deal.read",
    "message.sent",
    "message.send_failed",
    "sync.progress",
    "customer.updated",
)

PONG: Final = b'{"type":"pong"}'


@dataclass(frozen=True, slots=True)
class Routed:
    """A frame waiting for its `seq`, the streams it joins and its duplicate key."""

    streams: tuple[str, ...]
    key: tuple[str, ...]
    body: dict[str, Any]


def encode(seq: int, body: dict[str, Any]) -> bytes:
    return pydantic_core.to_json({"type": body["type"], "seq": seq, **body})


def resync(seq: int) -> bytes:
    return encode(seq, {"type": "resync"})


def route(event: AnyEvent) -> Routed | None:
    """The frame an event becomes, or None when it has no recipient or no frame."""
    key: tuple[str, ...]
    match event:
        case MessageReceived() | MessageEdited():
            deal_id = str(deal_id_for_telegram(event.business_connection_id, event.chat_id))
            view = _message(
                deal_id, event.business_connection_id, event.owner_user_id, event.message
            )
            if isinstance(event, MessageReceived):
                kind, key = "message.created", ("message", deal_id, event.message_id)
            else:
                edited = isoformat(event.message.edit_date) if event.message.edit_date else ""
                kind, key = "message.edited", ("edited", deal_id, event.message_id, edited)
            body = _deal(kind, deal_id, event.business_connection_id, event.chat_id, event)
            return Routed((event.owner_user_id,), key, {**body, "message": view})
        case MessagesDeleted():
            deal_id = str(deal_id_for_telegram(event.business_connection_id, event.chat_id))
            body = _deal(
                "message.deleted", deal_id, event.business_connection_id, event.chat_id, event
            )
            ids = list(event.message_ids)
            key = ("deleted", deal_id, *sorted(ids))
            return Routed((event.owner_user_id,), key, {**body, "message_ids": ids})
        case ConnectionUpdated():
            connection = event.connection
            body = {
                "type": "connection.updated",
                "business_connection_id": connection.id,
                "is_enabled": connection.is_enabled,
                "rights": connection.rights,
                "occurred_at": isoformat(event.occurred_at),
            }
            rights = pydantic_core.to_json(connection.rights).decode()
            enabled = str(connection.is_enabled)
            key = ("connection", connection.id, isoformat(connection.date), enabled, rights)
            return Routed((event.owner_user_id,), key, body)
        case MessageSent() | DealUpdated() | DealRead() | MessageSendFailed():
            return _deal_event(event)
        case CustomerUpdated():
            customer: dict[str, Any] = {"id": str(event.customer_id)}
            # The gateway's customer shape, as far as the event carries it.
            for field in ("external_id", "name", "username"):
                if (value := getattr(event, field)) is not None:
                    customer[field] = value
            if event.avatar_key:
                customer["avatar"] = f"/api/v1/customers/{event.customer_id}/avatar/"
            body = {
                "type": "customer.updated",
                "customer": customer,
                "occurred_at": isoformat(event.occurred_at),
            }
            streams = tuple(dict.fromkeys(event.owner_user_ids))
            return Routed(streams, ("event", str(event.event_id)), body) if streams else None
        case SyncProgress():
            body = {
                "type": "sync.progress",
                "task_id": str(event.task_id),
                **event.model_dump(
                    mode="json",
                    include={
                        "status",
                        "processed_chats",
                        "imported_messages",
                        "skipped_chats",
                        "failed_chats",
                    },
                ),
                "occurred_at": isoformat(event.occurred_at),
            }
            return Routed((ADMINS,), ("event", str(event.event_id)), body)
    return None


def _deal_event(event: MessageSent | DealUpdated | DealRead | MessageSendFailed) -> Routed | None:
    owner = event.owner_user_id
    if owner is None:
        return None
    deal_id = str(event.deal_id)
    body = _deal(event.type, deal_id, event.business_connection_id, event.chat_id, event)
    match event:
        case MessageSent():
            if event.message is None:
                return None  # nothing to show yet: Telegram's echo of it will be the frame
            connection = event.business_connection_id or ""
            view = _message(deal_id, connection, owner, event.message)
            body["type"] = "message.created"
            body["chat_id"] = event.chat_id or event.message.chat.id
            # Lets the tab that sent the reply swap its optimistic bubble for this one.
            body["client_request_id"] = event.client_request_id
            return Routed(
                (owner,), ("message", deal_id, event.message_id), {**body, "message": view}
            )
        case DealUpdated():
            preview = event.last_message
            body |= {
                "unread_count": event.unread_count,
                "last_message_id": event.last_message_id,
                "last_message_at": _time(event.last_message_at),
                "last_message": (
                    {
                        "text": preview.text,
                        "direction": preview.direction,
                        "date": _time(preview.date),
                    }
                    if preview is not None
                    else None
                ),
                "total_messages": event.total_messages,
            }
            return Routed((owner,), ("deal", deal_id, str(event.version)), body)
        case DealRead():
            body |= {
                "read_up_to": event.read_up_to,
                "unread_count": event.unread_count,
                "read_sync": event.read_sync.model_dump(mode="json"),
            }
        case MessageSendFailed():
            body |= {"client_request_id": event.client_request_id, "reason": event.reason}
    return Routed((owner,), ("event", str(event.event_id)), body)


def _deal(
    kind: str,
    deal_id: str,
    business_connection_id: str | None,
    chat_id: str | None,
    event: MessageReceived | MessageEdited | MessagesDeleted | DealEvent,
) -> dict[str, Any]:
    return {
        "type": kind,
        "deal_id": deal_id,
        "business_connection_id": business_connection_id,
        "chat_id": chat_id,
        "occurred_at": isoformat(event.occurred_at),
    }


def _message(
    deal_id: str, business_connection_id: str, owner_user_id: str, message: TelegramMessage
) -> dict[str, Any]:
    try:
        sort_key = telegram_message_key(message.message_id)
    except ValueError:
        sort_key = ""
    item = telegram_message_item(
        deal_id=deal_id,
        sort_key=sort_key,
        business_connection_id=business_connection_id,
        owner_user_id=owner_user_id,
        message=message,
    )
    return message_view(item)


def _time(moment: Any) -> str | None:
    return isoformat(moment) if moment is not None else None
