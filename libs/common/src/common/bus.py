"""The RabbitMQ topology, declared once, and the two ways messages enter it.

Exchanges:
- `chat_sync.events` (topic): facts, routing key = the event's `type`.
- `chat_sync.commands` (topic): requests from the gateway to the sync-worker.
- `chat_sync.retry` (headers): a failed delivery is republished here with its target queue as
  routing key and a `retry-tier` header; the tier queue holds it for its TTL and then
  dead-letters it through the default exchange, i.e. straight back into the target queue.
- `chat_sync.dead` (direct): a delivery that failed every tier (or could not be decoded) is
  parked in `<queue>.dead`, with the error in its headers, until someone requeues it.

Every consumer queue is durable and dead-letters into its parked queue, so a rejected message
is kept, not dropped. Every publish is persistent and waits for the broker's confirm.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

import aiormq
import structlog
from aio_pika.abc import AbstractChannel
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import ClassicQueueArgs
from pamqp import commands as spec
from pydantic import ValidationError

from common.events import Command, Event
from common.metrics import MESSAGES_DEAD, MESSAGES_RETRIED

log = structlog.get_logger(__name__)

EVENTS: Final = RabbitExchange("chat_sync.events", type=ExchangeType.TOPIC, durable=True)
COMMANDS: Final = RabbitExchange("chat_sync.commands", type=ExchangeType.TOPIC, durable=True)
RETRY: Final = RabbitExchange("chat_sync.retry", type=ExchangeType.HEADERS, durable=True)
DEAD: Final = RabbitExchange("chat_sync.dead", type=ExchangeType.DIRECT, durable=True)

PERSISTENT: Final = 2  # AMQP delivery mode: written to disk before the broker confirms
# Growing delays before a failed delivery is tried again; after the last one it is parked.
RETRY_DELAYS_SECONDS: Final = (1, 10, 60)
ATTEMPT_HEADER: Final = "x-chat-sync-attempt"
ERROR_HEADER: Final = "x-chat-sync-error"
QUEUE_HEADER: Final = "x-chat-sync-queue"
# Set by `sync-worker requeue-dead` on what it moves back, which starts with no attempt count.
REQUEUED_HEADER: Final = "x-chat-sync-requeued"
_TIER_HEADER: Final = "retry-tier"  # headers exchanges ignore keys starting with "x-"

_consumer_queues: dict[str, RabbitQueue] = {}


def tried_before(headers: Mapping[str, Any] | None, *, redelivered: bool) -> bool:
    """Whether a delivery failed somewhere before: redelivered by RabbitMQ, back from a retry
    tier, or requeued from its dead queue."""
    return redelivered or bool(
        headers and (ATTEMPT_HEADER in headers or REQUEUED_HEADER in headers)
    )


@dataclass(frozen=True)
class Consumer:
    """One row of the event catalogue's consumers: queue `<service>.<routing key>`."""

    service: str
    routing_key: str
    exchange: RabbitExchange = EVENTS
    # One consumer at a time across all workers: outbound Telegram calls keep their pace
    # and their order without a shared store.
    single_active: bool = False

    @property
    def queue_name(self) -> str:
        return f"{self.service}.{self.routing_key}"


# Every catalogue queue is declared and bound by every service at start-up (and by
# `make run`), so an event published before its consumer first starts is kept, not returned.
CATALOGUE_CONSUMERS: Final = (
    Consumer("sync-worker", "telegram.connection.updated"),
    Consumer("sync-worker", "telegram.message.received"),
    Consumer("sync-worker", "telegram.message.edited"),
    Consumer("sync-worker", "telegram.messages.deleted"),
    Consumer("sync-worker", "sync.start", COMMANDS),
    Consumer("sync-worker", "deal.mark_read", COMMANDS, single_active=True),
    Consumer("sync-worker", "message.send", COMMANDS, single_active=True),
    Consumer("avatar-worker", "telegram.message.received"),
    Consumer("avatar-worker", "telegram.connection.updated"),
    Consumer("avatar-worker", "customer.imported"),
    Consumer("telegram-ingest", "telegram.update.unparsed"),
)
_SINGLE_ACTIVE = frozenset(c.queue_name for c in CATALOGUE_CONSUMERS if c.single_active)


def retry_queue_name(delay_seconds: int) -> str:
    return f"chat_sync.retry.{delay_seconds}s"


def dead_queue_name(queue_name: str) -> str:
    return f"{queue_name}.dead"


def consumer_queue(service: str, routing_key: str) -> RabbitQueue:
    """The durable queue `<service>.<routing key>`, parked into `<queue>.dead` on rejection.

    Its arguments come from here only: RabbitMQ refuses a redeclaration that differs.
    """
    name = f"{service}.{routing_key}"
    arguments: ClassicQueueArgs = {
        "x-dead-letter-exchange": DEAD.name,
        "x-dead-letter-routing-key": name,
    }
    if name in _SINGLE_ACTIVE:
        arguments["x-single-active-consumer"] = True
    queue = RabbitQueue(name, durable=True, routing_key=routing_key, arguments=arguments)
    _consumer_queues[name] = queue
    return queue


def registered_consumer_queues() -> list[str]:
    return sorted(_consumer_queues)


async def declare_topology(broker: RabbitBroker, queue_names: list[str] | None = None) -> None:
    """Declare exchanges, retry tiers and the parked queue of every consumer queue.

    Idempotent; the broker must be connected. Consumer queues themselves are declared and
    bound by their subscribers, but their parked queues must exist first, or a rejected
    message would be routed nowhere.
    """
    for exchange in (EVENTS, COMMANDS, RETRY, DEAD):
        await broker.declare_exchange(exchange)
    retry_exchange = await broker.declare_exchange(RETRY)
    for delay in RETRY_DELAYS_SECONDS:
        tier = await broker.declare_queue(
            RabbitQueue(
                retry_queue_name(delay),
                durable=True,
                arguments={"x-message-ttl": delay * 1000, "x-dead-letter-exchange": ""},
            )
        )
        await tier.bind(
            retry_exchange, arguments={"x-match": "all", _TIER_HEADER: retry_queue_name(delay)}
        )
    dead_exchange = await broker.declare_exchange(DEAD)
    extra = queue_names if queue_names is not None else registered_consumer_queues()
    catalogue = {consumer.queue_name for consumer in CATALOGUE_CONSUMERS}
    for name in sorted(catalogue | set(extra)):
        parked = await broker.declare_queue(RabbitQueue(dead_queue_name(name), durable=True))
        await parked.bind(dead_exchange, routing_key=name)
    for consumer in CATALOGUE_CONSUMERS:
        declared_exchange = await broker.declare_exchange(consumer.exchange)
        queue = consumer_queue(consumer.service, consumer.routing_key)
        # Straight on the channel, not through `broker.declare_queue`: FastStream caches a
        # declared queue by its definition alone, so a subscriber of this queue starting
        # later would be handed this object, on this channel, and consume on it without the
        # prefetch of its own channel: the whole queue at once.
        declared = await declared_exchange.channel.declare_queue(
            queue.name, durable=queue.durable, arguments=queue.arguments
        )
        await declared.bind(declared_exchange, consumer.routing_key)


def make_broker(
    url: str,
    *,
    publish_timeout: float,
    log_level: int = logging.DEBUG,
    raise_on_unroutable: bool = False,
    reconnect_interval: float = 5.0,
) -> RabbitBroker:
    """A broker whose consumers retry through the tiers and whose publishes are confirmed.

    `raise_on_unroutable` turns a message no queue took (returned as mandatory) into an error,
    for publishers whose caller must not be told "stored" about it.
    """
    return RabbitBroker(
        url,
        middlewares=[RetryMiddleware],
        default_channel=Channel(on_return_raises=raise_on_unroutable),
        # Per-message logging costs a third of the throughput; errors are logged by us.
        log_level=log_level,
        timeout=publish_timeout,
        graceful_timeout=15.0,
        reconnect_interval=reconnect_interval,
    )


async def ping(broker: RabbitBroker) -> None:
    """A readiness check: raises unless the broker's connection answers."""
    if not await broker.ping(timeout=1.0):
        raise ConnectionError("broker not connected")


async def publish_event(broker: RabbitBroker, event: Event, *, timeout: float = 5.0) -> None:
    """Publish a fact and wait until RabbitMQ has it on disk (persistent + confirmed)."""
    await _publish(broker, event, EVENTS, timeout)


async def publish_command(broker: RabbitBroker, command: Command, *, timeout: float = 5.0) -> None:
    await _publish(broker, command, COMMANDS, timeout)


def encode(message: Event) -> bytes:
    return message.model_dump_json().encode()


def amqp_properties(message: Event) -> spec.Basic.Properties:
    """The AMQP properties of every event and command: persistent JSON, `type` = routing key."""
    message_id = str(message.event_id)
    return spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=PERSISTENT,
        message_id=message_id,
        correlation_id=message_id,
        timestamp=datetime.now(UTC),
        message_type=str(getattr(message, "type")),  # noqa: B009 - every catalogue model has one
    )


async def _publish(
    broker: RabbitBroker, message: Event, exchange: RabbitExchange, timeout: float
) -> None:
    # The outer bound also covers a channel that is waiting for a reconnect.
    async with asyncio.timeout(timeout):
        declared = await broker.declare_exchange(exchange)  # FastStream's cached declaration
        await basic_publish(declared.channel, message, exchange.name, timeout=timeout)


async def basic_publish(
    channel: AbstractChannel, message: Event, exchange: str, *, timeout: float
) -> None:
    """Publish on the AMQP channel under FastStream's robust one and await the confirm.

    FastStream's `publish` builds message and exchange objects per call, and aio-pika holds
    the channel's lock until each frame is flushed, which serialises concurrent publishers:
    together a fifth of a publish. Same properties, `mandatory` (with the channel's
    `on_return_raises`, an unroutable message is an error), and a negative confirm raises.
    """
    # Waits while the robust channel reconnects. (aiormq's abstract channel type does not
    # declare `basic_publish`'s `wait`; its channel does.)
    underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
    properties = amqp_properties(message)
    await underlay.basic_publish(
        encode(message),
        exchange=exchange,
        routing_key=str(properties.message_type),
        properties=properties,
        mandatory=True,
        timeout=timeout,
        # Frames still go out in delivery-tag order; the confirm is still awaited.
        wait=False,
    )


class RetryMiddleware(BaseMiddleware):
    """Turn a failed delivery into a delayed retry, and the last failure into a parked message.

    The copy is published (and confirmed) before the original is acknowledged, so a crash in
    between can only repeat a delivery, which every consumer tolerates.
    """

    async def consume_scope(
        self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
    ) -> Any:
        try:
            return await call_next(msg)
        except Exception as error:
            await self._reroute(msg, error)
            return None

    async def _reroute(self, msg: StreamMessage[Any], error: Exception) -> None:
        handler = self.context.get_local("handler_")
        broker: RabbitBroker = self.context.get("broker")
        queue_name: str = handler.queue.name
        headers = dict(msg.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 0))
        reason = f"{type(error).__name__}: {error}"[:1000]
        headers.update(
            {ATTEMPT_HEADER: attempt + 1, ERROR_HEADER: reason, QUEUE_HEADER: queue_name}
        )
        # A body that does not validate will not validate next time either: park it at once.
        poison = isinstance(error, ValidationError)
        if attempt < len(RETRY_DELAYS_SECONDS) and not poison:
            tier = retry_queue_name(RETRY_DELAYS_SECONDS[attempt])
            headers[_TIER_HEADER] = tier
            exchange, routing_key = RETRY, queue_name
            MESSAGES_RETRIED.labels(queue=queue_name).inc()
        else:
            headers.pop(_TIER_HEADER, None)
            exchange, routing_key = DEAD, queue_name
            MESSAGES_DEAD.labels(queue=queue_name).inc()
        log.warning(
            "delivery failed",
            queue=queue_name,
            message_id=msg.message_id,
            attempt=attempt + 1,
            parked=exchange is DEAD,
            error=reason,
        )
        await broker.publish(
            msg.body,
            exchange=exchange,
            routing_key=routing_key,
            headers=headers,
            persist=True,
            message_id=msg.message_id,
            content_type=msg.content_type,
            timestamp=None,
        )
