"""Deterministic ids, so every service derives the same id from the same source identity.

A deal's id is a UUIDv5 of its source identity (`tg:{connection}:{chat}` or `ext:{upstream chat}`);
a customer's likewise (`tg-user:{telegram user id}` or `ext-customer:{upstream id}`). No service
needs a lookup to know which deal an event belongs to.
"""

import uuid
from datetime import datetime

# Fixed forever: changing it would re-key every deal and customer.
CHAT_SYNC_NAMESPACE = uuid.UUID("6f1d7c2e-5b8a-4f3e-9c41-2d7a0e9b8c15")

# Telegram message ids are positive 32-bit integers in practice; twelve digits leave room.
_MESSAGE_ID_WIDTH = 12


def telegram_deal_external_id(business_connection_id: str, chat_id: int | str) -> str:
    return f"tg:{business_connection_id}:{chat_id}"


def external_deal_external_id(upstream_chat_id: str) -> str:
    return f"ext:{upstream_chat_id}"


def deal_id_for_telegram(business_connection_id: str, chat_id: int | str) -> uuid.UUID:
    return uuid.uuid5(
        CHAT_SYNC_NAMESPACE, telegram_deal_external_id(business_connection_id, chat_id)
    )


def deal_id_for_external(upstream_chat_id: str) -> uuid.UUID:
    return uuid.uuid5(CHAT_SYNC_NAMESPACE, external_deal_external_id(upstream_chat_id))


def customer_id_for_telegram(user_id: int | str) -> uuid.UUID:
    return uuid.uuid5(CHAT_SYNC_NAMESPACE, f"tg-user:{user_id}")


def customer_id_for_external(upstream_customer_id: str) -> uuid.UUID:
    return uuid.uuid5(CHAT_SYNC_NAMESPACE, f"ext-customer:{upstream_customer_id}")


def telegram_message_key(message_id: int | str) -> str:
    """Sort key of a Telegram message: ids grow inside a chat, so zero-padding sorts by age."""
    number = int(message_id)
    if number < 0 or len(str(number)) > _MESSAGE_ID_WIDTH:
        raise ValueError(f"message id out of range: {message_id}")
    return f"m#{number:0{_MESSAGE_ID_WIDTH}d}"


def imported_message_key(created_at: datetime, upstream_message_id: str) -> str:
    """Sort key of an imported message: upstream ids are opaque, so the time orders them."""
    millis = int(created_at.timestamp() * 1000)
    return f"m#{millis:015d}#{upstream_message_id}"


def version_key(message_key: str, edit_date: int) -> str:
    """Sort key of one edit of a message, kept under the same partition as the message.

    Versions sort under `v#`, apart from the `m#` message items, so the history Query of a
    deal (`begins_with m#`) never reads them and the versions of one message are one Query.
    """
    return f"v#{message_key.removeprefix('m#')}#{edit_date:012d}"


def version_prefix(message_key: str) -> str:
    return f"v#{message_key.removeprefix('m#')}#"
