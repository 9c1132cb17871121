"""`message.send` against the fake Bot API over real HTTP, real PostgreSQL and DynamoDB."""

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.dynamo import from_attributes, to_attributes
from common.events import (
    DealUpdated,
    Event,
    MessageReceived,
    MessageSend,
    MessageSendFailed,
    MessageSent,
)
from common.ids import telegram_message_key
from common.models import Deal, MessageKey, SendRequest
from common.settings import Settings
from sync_worker.outbound.replies import message_from_api
from sync_worker.outbound.resources import Outbound
from sync_worker.outbound.sending import UNKNOWN_REASON, send
from sync_worker.outbound.testing import FakeBotApi, SeededDeal, fake_outbound, seed_deal

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


def _command(deal: SeededDeal, request_id: str = "req-1", **extra: Any) -> MessageSend:
    return MessageSend(
        deal_id=deal.id, client_request_id=request_id, text="Your order ships today", **extra
    )


async def _request(sessions: async_sessionmaker[AsyncSession], deal: SeededDeal) -> SendRequest:
    async with sessions() as session:
        row = await session.get(SendRequest, (deal.id, "req-1"))
    assert row is not None
    return row


async def _deal(sessions: async_sessionmaker[AsyncSession], deal: SeededDeal) -> Deal:
    async with sessions() as session:
        row = await session.get(Deal, deal.id)
    assert row is not None
    return row


async def test_reply_is_sent_with_the_connection_and_stored_as_outgoing(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    settings: Settings,
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001, 5002])

    await send(worker, _command(deal))

    [call] = bot.calls_to("sendMessage")
    assert call == {
        "business_connection_id": deal.connection_id,
        "chat_id": deal.chat_id,
        "text": "Your order ships today",
    }
    request = await _request(sessions, deal)
    assert (request.status, request.message_id) == ("sent", "9001")
    stored = await dynamo.get_item(
        TableName=settings.dynamodb_messages_table,
        Key=to_attributes({"deal_id": str(deal.id), "sk": telegram_message_key(9001)}),
    )
    item = from_attributes(stored["Item"])
    assert (item["direction"], item["sent_by"], item["text"]) == (
        "outgoing",
        "bot",
        "Your order ships today",
    )
    row = await _deal(sessions, deal)
    assert (row.total_messages, row.unread_count, row.last_message_id) == (3, 0, "9001")
    assert row.last_message == {
        "text": "Your order ships today",
        "direction": "outgoing",
        "date": item["date"],
    }
    sent = [event for event in published if isinstance(event, MessageSent)]
    assert [(event.client_request_id, event.message_id) for event in sent] == [("req-1", "9001")]
    assert any(isinstance(event, DealUpdated) and event.total_messages == 3 for event in published)


async def test_reply_to_a_message_passes_reply_parameters(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = outbound
    deal = await seed_deal(sessions, incoming=[5001])

    await send(worker, _command(deal, reply_to_message_id="5001"))

    [call] = bot.calls_to("sendMessage")
    assert call["reply_parameters"] == {"message_id": 5001, "allow_sending_without_reply": True}


async def test_429_waits_retry_after_then_sends_once(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001])
    bot.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    started = time.monotonic()

    await send(worker, _command(deal))

    assert time.monotonic() - started >= 1.0
    assert len(bot.calls_to("sendMessage")) == 2
    assert (await _request(sessions, deal)).status == "sent"
    assert [type(event) for event in published if not isinstance(event, DealUpdated)] == [
        MessageSent
    ]


async def test_5xx_is_retried_with_backoff(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = outbound
    deal = await seed_deal(sessions, incoming=[5001])
    bot.fail_next("sendMessage", 500, "Internal Server Error")
    bot.fail_next("sendMessage", 502, "Bad Gateway")

    await send(worker, _command(deal))

    assert len(bot.calls_to("sendMessage")) == 3
    assert (await _request(sessions, deal)).status == "sent"


async def test_403_is_final_with_telegrams_reason(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001])
    bot.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")

    await send(worker, _command(deal))

    assert len(bot.calls_to("sendMessage")) == 1
    request = await _request(sessions, deal)
    assert (request.status, request.reason) == ("failed", "Forbidden: bot was blocked by the user")
    assert [(type(event), getattr(event, "reason", None)) for event in published] == [
        (MessageSendFailed, "Forbidden: bot was blocked by the user")
    ]
    assert (await _deal(sessions, deal)).total_messages == 1


async def test_reply_is_refused_without_can_reply(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001], rights={"can_read_messages": True})

    await send(worker, _command(deal))

    assert bot.calls_to("sendMessage") == []
    request = await _request(sessions, deal)
    assert (request.status, request.reason) == ("failed", "no_right")
    assert [getattr(event, "reason", None) for event in published] == ["no_right"]


async def test_reply_is_refused_on_a_disabled_connection(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001], enabled=False)

    await send(worker, _command(deal))

    assert bot.calls_to("sendMessage") == []
    assert (await _request(sessions, deal)).reason == "connection_disabled"
    assert isinstance(published[0], MessageSendFailed)
    assert published[0].reason == "connection_disabled"


async def test_same_client_request_id_twice_sends_once(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001])

    await send(worker, _command(deal))
    await send(worker, _command(deal))

    assert len(bot.calls_to("sendMessage")) == 1
    sent = [event.message_id for event in published if isinstance(event, MessageSent)]
    assert sent == ["9001", "9001"]
    assert (await _deal(sessions, deal)).total_messages == 2


async def test_request_left_sending_becomes_unknown_and_is_not_sent(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001])
    async with sessions() as session, session.begin():
        # What a worker killed between recording the request and Telegram's answer leaves.
        session.add(
            SendRequest(deal_id=deal.id, client_request_id="req-1", text="hi", status="sending")
        )

    await send(worker, _command(deal))
    await send(worker, _command(deal))

    assert bot.calls_to("sendMessage") == []
    request = await _request(sessions, deal)
    assert (request.status, request.reason) == ("unknown", UNKNOWN_REASON)
    assert [type(event) for event in published] == [MessageSendFailed, MessageSendFailed]


async def test_worker_killed_during_a_send_leaves_it_unknown_and_not_sent_twice(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001])
    bot.delay_next("sendMessage", 0.5)
    sending = asyncio.create_task(send(worker, _command(deal)))
    for _ in range(500):
        if bot.calls_to("sendMessage"):
            break
        await asyncio.sleep(0.01)
    sending.cancel()  # the worker dies while Telegram is handling the request
    with contextlib.suppress(asyncio.CancelledError):
        await sending

    await send(worker, _command(deal))  # the command is delivered again

    assert len(bot.calls_to("sendMessage")) == 1
    request = await _request(sessions, deal)
    assert (request.status, request.reason) == ("unknown", UNKNOWN_REASON)
    assert [type(event) for event in published] == [MessageSendFailed]


async def test_send_whose_answer_never_comes_is_unknown_and_not_resent(
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    settings: Settings,
    bot: FakeBotApi,
    clean_database: None,
) -> None:
    deal = await seed_deal(sessions, incoming=[5001])
    bot.delay_next("sendMessage", 0.6)  # Telegram sends it, but the answer is lost
    table = settings.dynamodb_messages_table

    async with fake_outbound(sessions, dynamo, table, bot, timeout=0.3) as (worker, published):
        await send(worker, _command(deal))
        await send(worker, _command(deal))

    assert len(bot.calls_to("sendMessage")) == 1
    request = await _request(sessions, deal)
    assert (request.status, request.reason) == ("unknown", "sendMessage: ReadTimeout")
    assert [type(event) for event in published] == [MessageSendFailed, MessageSendFailed]


async def test_reply_is_stored_once_despite_telegrams_echo(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    settings: Settings,
) -> None:
    from sync_worker.live import Stores, persist

    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001])
    await send(worker, _command(deal))
    sent = next(event for event in published if isinstance(event, MessageSent))
    assert sent.message is not None
    echo = MessageReceived(
        owner_user_id=str(deal.owner_id),
        update_id=1,
        business_connection_id=deal.connection_id,
        chat_id=str(deal.chat_id),
        message_id=sent.message_id,
        message=sent.message,
    )

    await persist(Stores(sessions, dynamo, settings.dynamodb_messages_table), [echo])

    row = await _deal(sessions, deal)
    assert (row.total_messages, row.unread_count) == (2, 0)
    async with sessions() as session:
        keys = await session.scalar(
            select(func.count()).where(
                MessageKey.deal_id == deal.id, MessageKey.message_id == sent.message_id
            )
        )
    assert keys == 1


async def test_replies_to_one_chat_are_paced(
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    settings: Settings,
    bot: FakeBotApi,
    clean_database: None,
) -> None:
    deal = await seed_deal(sessions, incoming=[5001])
    table = settings.dynamodb_messages_table
    started = time.monotonic()

    async with fake_outbound(sessions, dynamo, table, bot, chat_rate=4.0) as (worker, _events):
        for number in range(3):
            await send(worker, _command(deal, f"req-{number}"))

    assert len(bot.calls_to("sendMessage")) == 3
    assert time.monotonic() - started >= 0.5  # three slots a quarter second apart


def test_message_from_api_keeps_the_reply_target() -> None:
    raw = {
        "message_id": 10,
        "from": {"id": 1, "is_bot": False, "first_name": "A"},
        "chat": {"id": 2, "type": "private"},
        "date": 1767229560,
        "text": "ok",
        "reply_to_message": {"message_id": 9, "chat": {"id": 2}, "date": 1767229500},
    }

    message = message_from_api(raw)

    assert (message.message_id, message.chat.id, message.reply_to_message_id) == ("10", "2", "9")
