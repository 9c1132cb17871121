"""Publishing that a 200 can rest on: persistent, confirmed, bounded in time.

Each caller awaits its own confirm; aio-pika pipelines them on one channel, so no request
waits behind another's. Any failure (broker down, negative confirm, an unroutable message,
no confirm in time) becomes `Unavailable`, which the webhook answers with 503.

FastStream owns the connection (reconnects, topology, readiness); the publish itself is
`common.bus.basic_publish`, on the AMQP channel underneath FastStream's robust aio-pika
channel, as every Chat Sync publisher does.
"""

import asyncio
import logging
import time

import structlog
from aio_pika.abc import AbstractChannel
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

from common import bus
from common.events import Event
from telegram_ingest.metrics import CONFIRM_SECONDS, EVENTS_PUBLISHED, PUBLISHES_IN_FLIGHT

log = structlog.get_logger(__name__)

SERVICE = "telegram-ingest"
UNPARSED_ROUTING_KEY = "telegram.update.unparsed"


class Unavailable(Exception):
    """A dependency failed; Telegram should retry the update later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def unparsed_queue() -> RabbitQueue:
    """Where unparseable updates are parked: `telegram-ingest.telegram.update.unparsed`."""
    return bus.consumer_queue(SERVICE, UNPARSED_ROUTING_KEY)


def make_publisher_broker(url: str, *, publish_timeout: float) -> RabbitBroker:
    """A publish-only broker whose channel raises on unroutable messages.

    `mandatory` is FastStream's default; `on_return_raises` turns a returned message (no
    queue bound yet) into an error, because an event no queue holds is a lost update.
    """
    return RabbitBroker(
        url,
        default_channel=Channel(on_return_raises=True),
        log_level=logging.DEBUG,
        timeout=publish_timeout,
        graceful_timeout=15.0,
        # Every second of outage is a second of 503s: reconnect eagerly (default is 5 s).
        reconnect_interval=1.0,
    )


async def connect(url: str, *, publish_timeout: float, wait_seconds: float) -> RabbitBroker:
    """A connected publisher broker, trying for `wait_seconds` while RabbitMQ starts up.

    Once connected, aio-pika's robust connection reconnects by itself; this only covers the
    first connection, which fails at once when the broker is not there yet.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    delay = 0.2
    while True:
        broker = make_publisher_broker(url, publish_timeout=publish_timeout)
        try:
            await broker.connect()
        except Exception as error:
            await broker.stop()
            if loop.time() + delay > deadline:
                raise
            log.warning("RabbitMQ not reachable yet", error=f"{type(error).__name__}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        return broker


async def declare(broker: RabbitBroker) -> None:
    """Declare the exchanges and the parked queue for unparseable updates, bound to EVENTS."""
    queue = unparsed_queue()
    await bus.declare_topology(broker, [queue.name])
    declared = await broker.declare_queue(queue)
    await declared.bind(await broker.declare_exchange(bus.EVENTS), routing_key=queue.routing_key)


class Publisher:
    def __init__(self, broker: RabbitBroker, channel: AbstractChannel, *, timeout: float) -> None:
        self.broker = broker
        self.channel = channel
        self.timeout = timeout

    @classmethod
    async def open(cls, broker: RabbitBroker, *, timeout: float) -> "Publisher":
        """On the broker's robust channel, which reopens itself after a reconnect."""
        events = await broker.declare_exchange(bus.EVENTS)
        return cls(broker, events.channel, timeout=timeout)

    async def publish(self, event: Event) -> None:
        routing_key = str(getattr(event, "type"))  # noqa: B009 - every catalogue event has one
        started = time.perf_counter()
        PUBLISHES_IN_FLIGHT.inc()
        try:
            # The outer bound also covers a channel that is waiting for a reconnect.
            async with asyncio.timeout(self.timeout):
                await bus.basic_publish(self.channel, event, bus.EVENTS.name, timeout=self.timeout)
        except Exception as error:
            log.warning(
                "publish failed",
                type=routing_key,
                update_id=getattr(event, "update_id", None),
                error=f"{type(error).__name__}",
            )
            raise Unavailable("broker") from error
        finally:
            PUBLISHES_IN_FLIGHT.dec()
            CONFIRM_SECONDS.observe(time.perf_counter() - started)
        EVENTS_PUBLISHED.labels(type=routing_key).inc()

    async def ready(self) -> None:
        await bus.ping(self.broker)
