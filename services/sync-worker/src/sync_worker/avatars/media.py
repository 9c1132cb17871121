"""Media of business messages copied from Telegram to S3 `media/{deal_id}/{file_unique_id}`.

The message item (written by the live path, `common.messages`) gets only the attributes this
worker owns: `media_status` `stored`, `too_large` (over the Bot API's 20 MB download limit; the
descriptor stays) or `failed` with a reason once the client's retries are spent. The stored key
is a plain S3 key: no URL with the bot token is ever stored.
"""

from typing import Any, Final
from urllib.parse import quote

from botocore.exceptions import ClientError
from prometheus_client import Counter

from common.dynamo import from_attributes, to_attributes
from common.events import MediaDescriptor, MessageReceived
from common.ids import deal_id_for_telegram, telegram_message_key
from sync_worker.avatars.resources import Avatars
from sync_worker.outbound.botapi import FileTooLarge, TelegramError, TelegramRefused

MAX_DOWNLOAD_BYTES: Final = 20 * 1024 * 1024
TOO_LARGE: Final = "larger than the Bot API's 20 MB download limit"
_DEFAULT_TYPES: Final = {
    "photo": "image/jpeg",
    "sticker": "image/webp",
    "voice": "audio/ogg",
    "audio": "audio/mpeg",
    "video": "video/mp4",
    "video_note": "video/mp4",
    "animation": "video/mp4",
    "document": "application/octet-stream",
}
_DONE: Final = frozenset({"stored", "too_large"})

MEDIA_COPIES = Counter(
    "chat_sync_media_copies_total", "Message media handled, by resulting status.", ["status"]
)


class MessageNotStored(Exception):
    """The live path has not written the message item yet: try again later."""


async def copy_media(avatars: Avatars, event: MessageReceived) -> None:
    media = event.message.media
    if media is None:
        return
    key = {
        "deal_id": str(deal_id_for_telegram(event.business_connection_id, event.chat_id)),
        "sk": telegram_message_key(event.message_id),
    }
    stored = await avatars.dynamo.get_item(
        TableName=avatars.table, Key=to_attributes(key), ConsistentRead=True
    )
    if "Item" not in stored:
        raise MessageNotStored(f"{key['deal_id']} {key['sk']}")
    if from_attributes(stored["Item"]).get("media_status") in _DONE:
        return
    if media.file_size is not None and media.file_size > MAX_DOWNLOAD_BYTES:
        await _mark(avatars, key, "too_large", reason=TOO_LARGE)
        return
    try:
        found = await avatars.bot.call("getFile", {"file_id": media.file_id}, pace=avatars.pace)
        if int(found.get("file_size") or 0) > MAX_DOWNLOAD_BYTES:
            raise FileTooLarge(str(found["file_size"]))
        body, served_type = await avatars.bot.download(
            found["file_path"], max_bytes=MAX_DOWNLOAD_BYTES
        )
    except FileTooLarge:
        await _mark(avatars, key, "too_large", reason=TOO_LARGE)
        return
    except TelegramRefused as error:
        if "too big" in error.reason.lower():
            await _mark(avatars, key, "too_large", reason=TOO_LARGE)
        else:
            await _mark(avatars, key, "failed", reason=error.reason)
        return
    except TelegramError as error:
        await _mark(avatars, key, "failed", reason=error.reason)
        return
    object_key = f"media/{key['deal_id']}/{media.file_unique_id}"
    await avatars.s3.put_object(
        Bucket=avatars.bucket, Key=object_key, Body=body, **_object_headers(media, served_type)
    )
    await _mark(avatars, key, "stored", media_key=object_key)


def _object_headers(media: MediaDescriptor, served_type: str | None) -> dict[str, Any]:
    content_type = media.mime_type
    if not content_type:
        served = (served_type or "").split(";")[0].strip()
        generic = not served or served == "application/octet-stream"
        content_type = _DEFAULT_TYPES[media.kind] if generic else served
    headers: dict[str, Any] = {"ContentType": content_type}
    if media.file_name:
        headers["ContentDisposition"] = f"attachment; filename*=UTF-8''{quote(media.file_name)}"
    return headers


async def _mark(
    avatars: Avatars,
    key: dict[str, str],
    status: str,
    *,
    media_key: str | None = None,
    reason: str | None = None,
) -> None:
    """Set only the media attributes, and only on an item the live path has written."""
    sets = ["#status = :status"]
    removes: list[str] = []
    names = {"#status": "media_status", "#key": "media_key", "#reason": "media_reason"}
    values: dict[str, Any] = {":status": status}
    for name, value in (("#key", media_key), ("#reason", reason)):
        if value is None:
            removes.append(name)
        else:
            sets.append(f"{name} = :{name[1:]}")
            values[f":{name[1:]}"] = value
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    try:
        await avatars.dynamo.update_item(
            TableName=avatars.table,
            Key=to_attributes(key),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(#message_id)",
            ExpressionAttributeNames={**names, "#message_id": "message_id"},
            ExpressionAttributeValues=to_attributes(values),
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise MessageNotStored(f"{key['deal_id']} {key['sk']}") from None
        raise
    MEDIA_COPIES.labels(status).inc()
