"""Raw aio-pika: the publishing floor (persistent, confirmed, a window of messages in flight),
sink queues so events are routable, and publishing catalogue events into the real topology.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aio_pika.exceptions import ChannelNotFoundEntity

from bench.harness import paced, quiet_gc
from common import bus
from common.events import Event


@asynccontextmanager
async def channel(url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(url, timeout=10)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def events_exchange(chan: AbstractChannel) -> AbstractExchange:
    return await chan.declare_exchange(bus.EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True)


async def sink(chan: AbstractChannel, name: str, routing_keys: Sequence[str]) -> AbstractQueue:
    """A durable queue bound to the events exchange, so publishes there are routable."""
    exchange = await events_exchange(chan)
    queue = await chan.declare_queue(name, durable=True)
    for key in routing_keys:
        await queue.bind(exchange, routing_key=key)
    return queue


async def consumer_queue(chan: AbstractChannel, service: str, routing_key: str) -> AbstractQueue:
    """A service's own queue, declared exactly as `common.bus` declares it, and bound."""
    spec = bus.consumer_queue(service, routing_key)
    dead = await chan.declare_exchange(bus.DEAD.name, aio_pika.ExchangeType.DIRECT, durable=True)
    parked = await chan.declare_queue(bus.dead_queue_name(spec.name), durable=True)
    await parked.bind(dead, routing_key=spec.name)
    queue = await chan.declare_queue(spec.name, durable=True, arguments=dict(spec.arguments or {}))
    await queue.bind(await events_exchange(chan), routing_key=routing_key)
    return queue


def message(payload: bytes, routing_key: str, message_id: str | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        payload,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type="application/json",
        type=routing_key,
        message_id=message_id,
    )


async def publish_window(
    exchange: AbstractExchange,
    bodies: Callable[[int], bytes],
    routing_key: str,
    *,
    count: int,
    seconds: float,
    in_flight: int = 100,
) -> tuple[int, float]:
    """Persistent publishes with confirms, `in_flight` awaiting their confirm at any time.

    Returns (confirmed, elapsed seconds).
    """
    window = asyncio.Semaphore(in_flight)
    confirmed = 0
    deadline = time.perf_counter() + seconds

    async def one(index: int) -> None:
        nonlocal confirmed
        try:
            await exchange.publish(message(bodies(index), routing_key), routing_key, timeout=10)
            confirmed += 1
        finally:
            window.release()

    tasks: list[asyncio.Task[None]] = []
    begin = time.perf_counter()
    for index in range(count):
        if time.perf_counter() > deadline:
            break
        await window.acquire()
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks, return_exceptions=True)
    return confirmed, time.perf_counter() - begin


async def publish_open_loop(
    exchange: AbstractExchange, body: bytes, routing_key: str, *, rate: float, seconds: float
) -> list[float]:
    """Persistent publishes at a fixed rate, each awaiting its confirm; seconds per publish,
    counted from its scheduled time (the open loop the webhook's latency is measured with)."""
    latencies: list[float] = []

    async def one(scheduled: float) -> None:
        await exchange.publish(message(body, routing_key), routing_key, timeout=10)
        latencies.append(time.perf_counter() - scheduled)

    tasks: list[asyncio.Task[None]] = []
    with quiet_gc():
        async for _index, scheduled in paced(max(1, int(rate * seconds)), rate):
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    return latencies


async def publish_events(exchange: AbstractExchange, events: Sequence[Event]) -> None:
    """Catalogue events as services publish them (routing key = type), 100 in flight."""
    window = asyncio.Semaphore(100)

    async def one(event: Event) -> None:
        async with window:
            key = str(getattr(event, "type"))  # noqa: B009 - every catalogue model has one
            await exchange.publish(
                message(bus.encode(event), key, str(event.event_id)), key, timeout=10
            )

    await asyncio.gather(*(one(event) for event in events))


async def ready_count(chan: AbstractChannel, name: str) -> int:
    queue = await chan.declare_queue(name, passive=True)
    result: Any = queue.declaration_result
    return int(result.message_count)


async def purge_if_declared(url: str, names: Sequence[str]) -> dict[str, int]:
    """Empty the named queues that exist (earlier benchmarks leave backlogs in them)."""
    purged: dict[str, int] = {}
    connection = await aio_pika.connect(url, timeout=10)
    try:
        for name in names:
            chan = await connection.channel()
            try:
                queue = await chan.declare_queue(name, passive=True)
                result: Any = await queue.purge()
                purged[name] = int(result.message_count)
            except ChannelNotFoundEntity:
                continue
            finally:
                with contextlib.suppress(Exception):
                    await chan.close()
    finally:
        await connection.close()
    return purged


async def queue_depth(url: str, name: str) -> int | None:
    """Messages ready in a queue (None when it does not exist)."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        chan = await connection.channel()
        try:
            queue = await chan.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return None
        count = queue.declaration_result.message_count
        return None if count is None else int(count)
    finally:
        await connection.close()
