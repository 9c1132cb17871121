"""Message media copied to local S3 from the fake Bot API; the item's media attributes."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.dynamo import from_attributes, to_attributes
from common.events import (
    Event,
    MediaDescriptor,
    MessageReceived,
    TelegramChat,
    TelegramMessage,
    TelegramUser,
)
from common.ids import deal_id_for_telegram, telegram_message_key
from common.messages import telegram_message_item
from common.settings import Settings
from sync_worker.avatars.media import TOO_LARGE, MessageNotStored, copy_media
from sync_worker.avatars.resources import Avatars
from sync_worker.avatars.testing import fake_avatars
from sync_worker.outbound.botapi import BotApi
from sync_worker.outbound.testing import FAST_RETRIES, FakeBotApi

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client

MB = 1024 * 1024


@pytest.fixture
async def avatars(
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    s3: "S3Client",
    settings: Settings,
    bot: FakeBotApi,
) -> AsyncIterator[tuple[Avatars, list[Event]]]:
    table, bucket = settings.dynamodb_messages_table, settings.s3_bucket
    async with fake_avatars(sessions, dynamo, table, s3, bucket, bot) as pair:
        yield pair


def _event(media: MediaDescriptor) -> MessageReceived:
    connection = f"conn-{uuid.uuid4().hex[:12]}"
    message = TelegramMessage(
        message_id=5013,
        chat=TelegramChat(id=222222222, first_name="Boris"),
        sender=TelegramUser(id=222222222, first_name="Boris"),
        date=datetime(2026, 1, 1, tzinfo=UTC),
        caption="Receipt",
        media=media,
    )
    return MessageReceived(
        owner_user_id="111111111",
        update_id=1,
        business_connection_id=connection,
        chat_id="222222222",
        message_id="5013",
        message=message,
    )


def _key(event: MessageReceived) -> dict[str, str]:
    deal_id = deal_id_for_telegram(event.business_connection_id, event.chat_id)
    return {"deal_id": str(deal_id), "sk": telegram_message_key(event.message_id)}


async def _store_item(dynamo: "DynamoDBClient", table: str, event: MessageReceived) -> None:
    """The item as the live path writes it, media still pending."""
    key = _key(event)
    item = telegram_message_item(
        deal_id=key["deal_id"],
        sort_key=key["sk"],
        business_connection_id=event.business_connection_id,
        owner_user_id=event.owner_user_id,
        message=event.message,
    )
    await dynamo.put_item(TableName=table, Item=to_attributes(item))


async def _item(dynamo: "DynamoDBClient", table: str, event: MessageReceived) -> dict[str, Any]:
    stored = await dynamo.get_item(TableName=table, Key=to_attributes(_key(event)))
    return from_attributes(stored["Item"])


async def test_photo_is_copied_to_s3_and_the_item_marked_stored(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    dynamo: "DynamoDBClient",
    s3: "S3Client",
    settings: Settings,
) -> None:
    worker, _published = avatars
    body = b"\xff\xd8" + b"photo" * 1000
    bot.add_file("photo-x", "AQADd1xrG0x", body, "application/octet-stream")
    event = _event(MediaDescriptor(kind="photo", file_id="photo-x", file_unique_id="AQADd1xrG0x"))
    await _store_item(dynamo, settings.dynamodb_messages_table, event)

    await copy_media(worker, event)

    object_key = f"media/{_key(event)['deal_id']}/AQADd1xrG0x"
    stored = await s3.get_object(Bucket=settings.s3_bucket, Key=object_key)
    assert (await stored["Body"].read(), stored["ContentType"]) == (body, "image/jpeg")
    item = await _item(dynamo, settings.dynamodb_messages_table, event)
    assert (item["media_status"], item["media_key"], item["caption"]) == (
        "stored",
        object_key,
        "Receipt",
    )
    assert "media_reason" not in item
    assert bot.token not in str(item)


async def test_document_keeps_its_content_type_and_file_name(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    dynamo: "DynamoDBClient",
    s3: "S3Client",
    settings: Settings,
) -> None:
    worker, _published = avatars
    bot.add_file("doc-1", "DOC1", b"%PDF-1.7", "application/octet-stream")
    media = MediaDescriptor(
        kind="document",
        file_id="doc-1",
        file_unique_id="DOC1",
        mime_type="application/pdf",
        file_name="счёт 42.pdf",
    )
    event = _event(media)
    await _store_item(dynamo, settings.dynamodb_messages_table, event)

    await copy_media(worker, event)

    stored = await s3.head_object(
        Bucket=settings.s3_bucket, Key=f"media/{_key(event)['deal_id']}/DOC1"
    )
    assert stored["ContentType"] == "application/pdf"
    assert stored["ContentDisposition"] == (
        "attachment; filename*=UTF-8''%D1%81%D1%87%D1%91%D1%82%2042.pdf"
    )


@pytest.mark.parametrize("declared_size", [25 * MB, None])
async def test_25_mb_document_is_recorded_too_large_with_its_metadata(
    declared_size: int | None,
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    dynamo: "DynamoDBClient",
    settings: Settings,
) -> None:
    worker, _published = avatars
    bot.add_file("big-1", "BIG1", b"x", file_size=25 * MB)
    media = MediaDescriptor(
        kind="document",
        file_id="big-1",
        file_unique_id="BIG1",
        file_size=declared_size,
        file_name="catalogue.zip",
    )
    event = _event(media)
    await _store_item(dynamo, settings.dynamodb_messages_table, event)

    await copy_media(worker, event)

    item = await _item(dynamo, settings.dynamodb_messages_table, event)
    assert (item["media_status"], item["media_reason"]) == ("too_large", TOO_LARGE)
    assert item["media"]["file_name"] == "catalogue.zip"
    assert "media_key" not in item
    assert bot.downloads == []


async def test_media_failing_after_retries_is_recorded_failed(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    dynamo: "DynamoDBClient",
    settings: Settings,
) -> None:
    worker, _published = avatars
    for _ in range(worker.bot.policy.attempts):
        bot.fail_next("getFile", 500, "Internal Server Error")
    event = _event(MediaDescriptor(kind="voice", file_id="voice-1", file_unique_id="V1"))
    await _store_item(dynamo, settings.dynamodb_messages_table, event)

    await copy_media(worker, event)

    assert len(bot.calls_to("getFile")) == worker.bot.policy.attempts
    item = await _item(dynamo, settings.dynamodb_messages_table, event)
    assert (item["media_status"], item["media_reason"]) == ("failed", "Internal Server Error")


async def test_media_waits_until_the_message_item_is_written(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    dynamo: "DynamoDBClient",
    settings: Settings,
) -> None:
    worker, _published = avatars
    event = _event(MediaDescriptor(kind="sticker", file_id="st-1", file_unique_id="ST1"))

    with pytest.raises(MessageNotStored):
        await copy_media(worker, event)

    stored = await dynamo.get_item(
        TableName=settings.dynamodb_messages_table, Key=to_attributes(_key(event))
    )
    assert "Item" not in stored
    assert bot.calls == []


async def test_unreachable_bot_api_is_recorded_failed_without_the_token(
    avatars: tuple[Avatars, list[Event]],
    dynamo: "DynamoDBClient",
    settings: Settings,
) -> None:
    worker, _published = avatars
    token = settings.telegram_bot_token.get_secret_value()
    event = _event(MediaDescriptor(kind="video", file_id="vid-1", file_unique_id="VID1"))
    await _store_item(dynamo, settings.dynamodb_messages_table, event)

    async with httpx.AsyncClient(timeout=2) as http:
        closed = BotApi(http, base_url="http://127.0.0.1:9", token=token, policy=FAST_RETRIES)
        await copy_media(replace(worker, bot=closed), event)

    item = await _item(dynamo, settings.dynamodb_messages_table, event)
    assert (item["media_status"], item["media_reason"]) == ("failed", "getFile: ConnectError")
    assert token not in str(item)
