"""`deal.mark_read` against the fake Bot API over real HTTP and real PostgreSQL, and both
outbound commands through the real broker."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker, RabbitQueue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import bus
from common.events import (
    DealMarkRead,
    DealRead,
    Event,
    MessageSend,
    MessageSent,
    ReadSync,
    event_adapter,
)
from common.models import Deal, SendRequest
from common.testing import Infrastructure, settings_for
from sync_worker.outbound import QUEUES, open_outbound, router
from sync_worker.outbound.reading import mark_read, refusal_reason
from sync_worker.outbound.resources import Outbound
from sync_worker.outbound.subscribers import MESSAGE_SEND_QUEUE
from sync_worker.outbound.testing import FakeBotApi, SeededDeal, seed_deal

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


async def _deal(sessions: async_sessionmaker[AsyncSession], deal: SeededDeal) -> Deal:
    async with sessions() as session:
        row = await session.get(Deal, deal.id)
    assert row is not None
    return row


async def test_mark_read_tells_telegram_the_newest_incoming_message(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001, 5002, 5003])

    await mark_read(worker, DealMarkRead(deal_id=deal.id))

    assert bot.calls_to("readBusinessMessage") == [
        {"business_connection_id": deal.connection_id, "chat_id": deal.chat_id, "message_id": 5003}
    ]
    row = await _deal(sessions, deal)
    assert (row.read_up_to, row.unread_count) == ("5003", 0)
    assert (row.read_sync_status, row.read_sync_reason) == ("accepted", None)
    assert row.read_sync_at is not None
    [event] = published
    assert isinstance(event, DealRead)
    assert (event.read_up_to, event.unread_count, event.read_sync) == (
        "5003",
        0,
        ReadSync(status="accepted"),
    )


async def test_mark_read_up_to_a_message_reads_the_newest_incoming_at_or_below_it(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = outbound
    deal = await seed_deal(sessions, incoming=[5001, 5002, 5005, 5006])

    await mark_read(worker, DealMarkRead(deal_id=deal.id, message_id="5004"))

    assert [call["message_id"] for call in bot.calls_to("readBusinessMessage")] == [5002]
    row = await _deal(sessions, deal)
    assert (row.read_up_to, row.unread_count) == ("5004", 2)


async def test_mark_read_never_moves_the_horizon_back(
    outbound: tuple[Outbound, list[Event]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = outbound
    deal = await seed_deal(sessions, incoming=[5001, 5002, 5003])
    await mark_read(worker, DealMarkRead(deal_id=deal.id))

    await mark_read(worker, DealMarkRead(deal_id=deal.id, message_id="5001"))

    row = await _deal(sessions, deal)
    assert (row.read_up_to, row.unread_count) == ("5003", 0)


async def test_mark_read_without_the_right_is_recorded_but_not_sent(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = outbound
    deal = await seed_deal(sessions, incoming=[5001, 5002], rights={"can_reply": True})

    await mark_read(worker, DealMarkRead(deal_id=deal.id))

    assert bot.calls_to("readBusinessMessage") == []
    row = await _deal(sessions, deal)
    assert (row.unread_count, row.read_sync_status, row.read_sync_reason) == (
        0,
        "refused",
        "no_right",
    )
    assert isinstance(published[0], DealRead)
    assert published[0].read_sync == ReadSync(status="refused", reason="no_right")


async def test_mark_read_on_a_disabled_connection_is_not_sent(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = outbound
    deal = await seed_deal(sessions, incoming=[5001], enabled=False)

    await mark_read(worker, DealMarkRead(deal_id=deal.id))

    assert bot.calls_to("readBusinessMessage") == []
    row = await _deal(sessions, deal)
    assert (row.unread_count, row.read_sync_reason) == (0, "connection_disabled")


async def test_mark_read_in_a_chat_silent_for_a_day_is_recorded_chat_inactive(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = outbound
    deal = await seed_deal(sessions, incoming=[5001])
    bot.fail_next("readBusinessMessage", 400, "Bad Request: CHAT_INACTIVE")

    await mark_read(worker, DealMarkRead(deal_id=deal.id))

    row = await _deal(sessions, deal)
    assert (row.read_sync_status, row.read_sync_reason) == ("refused", "chat_inactive")


async def test_mark_read_refused_by_telegram_keeps_telegrams_text(
    outbound: tuple[Outbound, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = outbound
    deal = await seed_deal(sessions, incoming=[5001])
    bot.fail_next("readBusinessMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    bot.fail_next("readBusinessMessage", 403, "Forbidden: bot was kicked")

    await mark_read(worker, DealMarkRead(deal_id=deal.id))

    assert len(bot.calls_to("readBusinessMessage")) == 2
    row = await _deal(sessions, deal)
    assert (row.read_sync_status, row.read_sync_reason) == ("refused", "Forbidden: bot was kicked")


def test_refusal_reason_names_the_24_hour_rule() -> None:
    assert refusal_reason("Bad Request: chat is not active in the last 24 hours") == (
        "chat_inactive"
    )
    assert refusal_reason("Bad Request: message not found") == "Bad Request: message not found"


# --- through the real broker -------------------------------------------------------------


@pytest.fixture
async def live_broker(
    infrastructure: Infrastructure,
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    bot: FakeBotApi,
    clean_database: None,
) -> AsyncIterator[tuple[RabbitBroker, asyncio.Queue[Event]]]:
    settings = settings_for(infrastructure, telegram_api_url=bot.url)
    broker = bus.make_broker(settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    broker.include_router(router)
    received: asyncio.Queue[Event] = asyncio.Queue()
    # Exclusive: gone with the connection, so no test leaves a catch-all binding behind.
    listener = RabbitQueue(f"outbound-test-{uuid.uuid4().hex[:8]}", exclusive=True, routing_key="#")

    @broker.subscriber(listener, bus.EVENTS)
    async def on_any(body: dict[str, Any]) -> None:
        await received.put(event_adapter.validate_python(body))

    async with open_outbound(settings, sessions, dynamo, broker) as outbound:
        broker.context.set_global("outbound", outbound)
        await broker.connect()
        await bus.declare_topology(broker, QUEUES)
        await broker.start()
        yield broker, received
        await broker.stop()


async def _next_for(received: asyncio.Queue[Event], deal_id: uuid.UUID, kind: type[Event]) -> Event:
    """The next event of this kind about this deal: the vhost is shared with other tests."""
    async with asyncio.timeout(10):
        while True:
            event = await received.get()
            if isinstance(event, kind) and getattr(event, "deal_id", None) == deal_id:
                return event


async def test_commands_are_consumed_from_their_queues(
    live_broker: tuple[RabbitBroker, asyncio.Queue[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    broker, received = live_broker
    deal = await seed_deal(sessions, incoming=[5001])

    await bus.publish_command(broker, DealMarkRead(deal_id=deal.id))
    read = await _next_for(received, deal.id, DealRead)
    await bus.publish_command(
        broker, MessageSend(deal_id=deal.id, client_request_id="req-b", text="hello")
    )
    sent = await _next_for(received, deal.id, MessageSent)

    assert isinstance(read, DealRead)
    assert read.read_sync.status == "accepted"
    assert isinstance(sent, MessageSent)
    assert sent.client_request_id == "req-b"
    async with sessions() as session:
        request = await session.get(SendRequest, (deal.id, "req-b"))
    assert request is not None
    assert request.status == "sent"
    assert len(bot.calls_to("sendMessage")) == 1


async def test_command_queues_have_a_single_active_consumer(
    live_broker: tuple[RabbitBroker, asyncio.Queue[Event]], infrastructure: Infrastructure
) -> None:
    arguments = dict(MESSAGE_SEND_QUEUE.arguments or {})
    without = {key: value for key, value in arguments.items() if key != "x-single-active-consumer"}

    connection = await aio_pika.connect(infrastructure.rabbitmq_url)
    async with connection:
        same = await connection.channel()
        await same.declare_queue(MESSAGE_SEND_QUEUE.name, durable=True, arguments=arguments)
        other = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await other.declare_queue(MESSAGE_SEND_QUEUE.name, durable=True, arguments=without)

    assert arguments["x-single-active-consumer"] is True
