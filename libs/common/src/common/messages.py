"""The message item contract between its writer (sync-worker), its readers (gateway, realtime)
and the avatar worker, which owns the media attributes.

DynamoDB message item (partition `deal_id`, sort `sk` = `common.ids` message key):

| attribute | owner | meaning |
|---|---|---|
| deal_id, sk, message_id, chat_id, business_connection_id | writer | identity (strings) |
| direction | writer | `incoming` / `outgoing` |
| sender | writer | `{"id", "name"}` or absent |
| sent_by | writer | `customer` / `owner` / `bot` |
| text, entities, caption, caption_entities, reply_to_message_id | writer | current content |
| date, edit_date | writer | RFC 3339 strings; `edit_ts` (int, 0 = never edited) orders edits |
| source | writer | `live` / `imported` |
| media | writer | descriptor: kind, file_id, file_unique_id, size, mime_type, file_name |
| media_status, media_key, media_reason | avatar | `pending`, `stored`, `too_large`, `failed` |
| deleted, deleted_at | delete handler | tombstone: content kept, marked deleted |

Version items (sort `common.ids.version_key`): text, entities, caption, caption_entities,
edit_date, edit_ts and the raw update the edit came from.
"""

from datetime import UTC, datetime
from typing import Any, Literal

from common.events import TelegramMessage

Direction = Literal["incoming", "outgoing"]
SentBy = Literal["customer", "owner", "bot"]
PREVIEW_LENGTH = 200


def isoformat(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def direction_of(message: TelegramMessage, owner_user_id: str) -> Direction:
    """Outgoing when the owner (or the bot on the owner's behalf) wrote it."""
    if message.sender_business_bot is not None:
        return "outgoing"
    if message.sender is not None and message.sender.id == owner_user_id:
        return "outgoing"
    return "incoming"


def sent_by_of(message: TelegramMessage, owner_user_id: str) -> SentBy:
    if message.sender_business_bot is not None:
        return "bot"
    return "owner" if direction_of(message, owner_user_id) == "outgoing" else "customer"


def content_attributes(message: TelegramMessage) -> dict[str, Any]:
    """What an edit replaces: the attributes a version item keeps."""
    return {
        "text": message.text,
        "entities": list(message.entities),
        "caption": message.caption,
        "caption_entities": list(message.caption_entities),
        "edit_date": isoformat(message.edit_date) if message.edit_date else None,
        "edit_ts": int(message.edit_date.timestamp()) if message.edit_date else 0,
    }


def telegram_message_item(
    *,
    deal_id: str,
    sort_key: str,
    business_connection_id: str,
    owner_user_id: str,
    message: TelegramMessage,
    source: Literal["live", "imported"] = "live",
) -> dict[str, Any]:
    """The item a live Telegram message is stored as (without the avatar worker's attributes)."""
    sender = message.sender
    item: dict[str, Any] = {
        "deal_id": deal_id,
        "sk": sort_key,
        "message_id": message.message_id,
        "chat_id": message.chat.id,
        "business_connection_id": business_connection_id,
        "direction": direction_of(message, owner_user_id),
        "sent_by": sent_by_of(message, owner_user_id),
        "sender": {"id": sender.id, "name": sender.full_name} if sender else None,
        "date": isoformat(message.date),
        "source": source,
        "reply_to_message_id": message.reply_to_message_id,
        "media": message.media.model_dump(exclude_none=True) if message.media else None,
        **content_attributes(message),
    }
    return item


def preview_text(item: dict[str, Any]) -> str:
    text = item.get("text") or item.get("caption") or ""
    if not text and item.get("media"):
        text = f"[{item['media'].get('kind', 'media')}]"
    return str(text)[:PREVIEW_LENGTH]


def message_view(
    item: dict[str, Any],
    *,
    versions: list[dict[str, Any]] | None = None,
    media_url: str | None = None,
) -> dict[str, Any]:
    """A message as the gateway serves it and realtime pushes it."""
    media = item.get("media")
    return {
        "id": str(item["message_id"]),
        "direction": item.get("direction", "incoming"),
        "sender": item.get("sender"),
        "sent_by": item.get("sent_by", "customer"),
        "text": item.get("text") if item.get("text") is not None else item.get("caption"),
        "entities": item.get("entities") or item.get("caption_entities") or [],
        "media": (
            {
                "kind": media.get("kind"),
                "status": item.get("media_status", "pending"),
                "url": media_url,
                "file_name": media.get("file_name"),
                "mime_type": media.get("mime_type"),
                "size": media.get("file_size"),
            }
            if media
            else None
        ),
        "date": item.get("date"),
        "edit_date": item.get("edit_date"),
        "edited": bool(item.get("edit_ts")),
        "versions": [
            {
                "text": v.get("text") if v.get("text") is not None else v.get("caption"),
                "edit_date": v.get("edit_date"),
            }
            for v in versions or []
        ],
        "deleted": bool(item.get("deleted", False)),
        "deleted_at": item.get("deleted_at"),
        "source": item.get("source", "live"),
        "reply_to_message_id": item.get("reply_to_message_id"),
    }
