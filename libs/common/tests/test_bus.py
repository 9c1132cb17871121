import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from faststream.rabbit import Channel, RabbitBroker

from common import bus
from common.events import DealUpdated
from common.settings import Settings


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[RabbitBroker]:
    broker = bus.make_broker(settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    yield broker
    await broker.stop()


async def _parked(settings: Settings, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        parked = await channel.get_queue(bus.dead_queue_name(queue))
        messages = []
        while (message := await parked.get(fail=False)) is not None:
            await message.ack()
            messages.append(message)
        return messages


async def test_published_event_reaches_its_consumer_queue(
    settings: Settings, broker: RabbitBroker
) -> None:
    service = f"t{uuid.uuid4().hex[:6]}"
    queue = bus.consumer_queue(service, "deal.updated")
    received: asyncio.Queue[DealUpdated] = asyncio.Queue()

    @broker.subscriber(queue, bus.EVENTS)
    async def on_deal_updated(event: DealUpdated) -> None:
        await received.put(event)

    await broker.connect()
    await bus.declare_topology(broker, [queue.name])
    await broker.start()
    event = DealUpdated(deal_id=uuid.uuid4(), version=1, unread_count=2, total_messages=3)
    await bus.publish_event(broker, event)

    assert await asyncio.wait_for(received.get(), 10) == event


async def test_failing_handler_is_retried_then_parked_with_its_error(
    settings: Settings, broker: RabbitBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus, "RETRY_DELAYS_SECONDS", (1, 1))
    service = f"t{uuid.uuid4().hex[:6]}"
    queue = bus.consumer_queue(service, "deal.updated")
    attempts: list[int] = []

    @broker.subscriber(queue, bus.EVENTS)
    async def on_deal_updated(event: DealUpdated) -> None:
        attempts.append(event.version)
        raise RuntimeError("store is down")

    await broker.connect()
    await bus.declare_topology(broker, [queue.name])
    await broker.start()
    await bus.publish_event(
        broker, DealUpdated(deal_id=uuid.uuid4(), version=7, unread_count=0, total_messages=0)
    )
    for _ in range(100):
        parked = await _parked(settings, queue.name)
        if parked:
            break
        await asyncio.sleep(0.1)

    assert attempts == [7, 7, 7]
    assert len(parked) == 1
    assert parked[0].headers[bus.ERROR_HEADER] == "RuntimeError: store is down"
    assert parked[0].headers[bus.ATTEMPT_HEADER] == 3


async def test_undecodable_message_is_parked_without_retries(
    settings: Settings, broker: RabbitBroker
) -> None:
    service = f"t{uuid.uuid4().hex[:6]}"
    queue = bus.consumer_queue(service, "deal.updated")
    calls: list[DealUpdated] = []

    @broker.subscriber(queue, bus.EVENTS)
    async def on_deal_updated(event: DealUpdated) -> None:
        calls.append(event)

    await broker.connect()
    await bus.declare_topology(broker, [queue.name])
    await broker.start()
    await broker.publish(
        b'{"type": "deal.updated", "version": "not a number"}',
        exchange=bus.EVENTS,
        routing_key="deal.updated",
        persist=True,
        content_type="application/json",
    )
    for _ in range(50):
        parked = await _parked(settings, queue.name)
        if parked:
            break
        await asyncio.sleep(0.1)

    assert calls == []
    assert len(parked) == 1
    assert parked[0].headers[bus.ATTEMPT_HEADER] == 1


async def test_topology_keeps_catalogue_events_before_any_consumer_starts(
    settings: Settings,
) -> None:
    publisher = bus.make_broker(
        settings.rabbitmq_url.get_secret_value(), publish_timeout=5, raise_on_unroutable=True
    )
    await publisher.connect()
    try:
        await bus.declare_topology(publisher, [])
        await bus.declare_topology(publisher, [])  # idempotent
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await publisher.publish(
                b"{}", exchange=bus.EVENTS, routing_key="nobody.listens", persist=True
            )
        await publisher.publish(
            b"{}",
            exchange=bus.EVENTS,
            routing_key="customer.imported",
            persist=True,
        )
    finally:
        await publisher.stop()

    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        kept = await channel.declare_queue("avatar-worker.customer.imported", passive=True)
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            # Declared single-active-consumer: a declaration without it is refused.
            await channel.declare_queue("sync-worker.message.send", durable=True)

    assert (kept.declaration_result.message_count or 0) >= 1


async def test_a_catalogue_queue_is_consumed_with_its_subscribers_prefetch(
    settings: Settings, broker: RabbitBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The topology declares every catalogue queue before the subscribers start; the
    subscriber must still consume on its own channel, at most `prefetch` at a time."""
    service = f"t{uuid.uuid4().hex[:6]}"
    consumer = bus.Consumer(service, "deal.updated")
    monkeypatch.setattr(bus, "CATALOGUE_CONSUMERS", (*bus.CATALOGUE_CONSUMERS, consumer))
    queue = bus.consumer_queue(service, "deal.updated")
    started: list[DealUpdated] = []
    release, three_started, all_started = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @broker.subscriber(queue, bus.EVENTS, channel=Channel(prefetch_count=3))
    async def on_deal_updated(event: DealUpdated) -> None:
        started.append(event)
        if len(started) == 3:
            three_started.set()
        if len(started) == 20:
            all_started.set()
        await release.wait()

    await broker.connect()
    await bus.declare_topology(broker, [queue.name])
    for version in range(20):
        event = DealUpdated(deal_id=uuid.uuid4(), version=version, unread_count=0, total_messages=0)
        await bus.publish_event(broker, event)
    await broker.start()
    try:
        await asyncio.wait_for(three_started.wait(), 10)
        await asyncio.sleep(0.5)  # time for more deliveries, had the limit not held
        assert len(started) == 3
    finally:
        release.set()
    await asyncio.wait_for(all_started.wait(), 10)


@pytest.mark.parametrize(
    ("headers", "redelivered", "expected"),
    [
        (None, False, False),
        ({"x-other": 1}, False, False),
        (None, True, True),
        ({bus.ATTEMPT_HEADER: 1}, False, True),
        ({bus.REQUEUED_HEADER: True}, False, True),
    ],
)
def test_a_delivery_was_tried_before_when_redelivered_retried_or_requeued(
    headers: dict[str, object] | None, redelivered: bool, expected: bool
) -> None:
    assert bus.tried_before(headers, redelivered=redelivered) is expected
