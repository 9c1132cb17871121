"""The journal: one RabbitMQ stream whose offsets are the frames' `seq`.

Why a stream. `seq` must be assigned in exactly one place, be the same on every realtime
instance and survive restarts. A RabbitMQ stream queue (`realtime.journal`, bound to
`chat_sync.events` for the routing keys realtime shows) does all three without a process of
ours in the path: RabbitMQ appends each event once and numbers it with its offset; every
instance reads the same stream with its own consumer (streams are non-destructive), so every
instance sees the same event under the same offset; the stream is durable (replicated on a
cluster), so the numbering outlives any instance. A single-active-consumer sequencer writing
its own journal would add a hop, a leader to fail over and a second store for the same facts.
The stream is bound to the routing keys realtime shows, not `#`: a batch sync's thousands of
`customer.imported` and the raw `telegram.update.unparsed` would only lengthen every replay.

Retention. The stream keeps `REALTIME_RETENTION_HOURS` (`x-max-age`, in small segments so
it is trimmed in small steps) under a size cap. An instance reads it from its first entry at
start-up and keeps each user's window in memory: the newest `REALTIME_RETENTION_EVENTS`, and
beyond them everything younger than the age limit. A resume from before an instance's window
(or before the oldest entry the stream still held when the instance started) answers
`resync`: the client reloads through the gateway, never silently misses an event.

Catching up. Stream offsets carry no "end" marker, so at start-up an instance appends a marker
of its own to the stream and counts itself ready when it reads the marker back: everything
journalled before it started is then in its windows. Markers and unreadable events use up an
offset and produce no frame, which is why `seq` may have gaps.

After a lost connection the consumer resumes at the offset after the last one it read, so an
outage delays events but neither drops nor repeats them.
"""

import asyncio
import contextlib
import uuid
from typing import Any, Final

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelNotFoundEntity
from pydantic import ValidationError

from common.bus import EVENTS
from common.events import event_adapter
from realtime.frames import ROUTING_KEYS
from realtime.hub import Hub

log = structlog.get_logger(__name__)

STREAM: Final = "realtime.journal"
MARKER_TYPE: Final = "realtime.marker"
MAX_BYTES: Final = 4 << 30
SEGMENT_BYTES: Final = 16 << 20
PREFETCH: Final = 1_000
# Stream acks only return credit (nothing is deleted), so one ack covers many entries.
ACK_EVERY: Final = 50
RECONNECT_SECONDS: Final = (0.5, 1.0, 2.0, 5.0)


def stream_arguments(retention_hours: int) -> dict[str, Any]:
    return {
        "x-queue-type": "stream",
        "x-max-age": f"{retention_hours}h",
        "x-max-length-bytes": MAX_BYTES,
        "x-stream-max-segment-size-bytes": SEGMENT_BYTES,
    }


class Journal:
    """Reads the stream into a hub, from its start, then live, across reconnects."""

    def __init__(self, url: str, hub: Hub, *, retention_hours: int) -> None:
        self.url = url
        self.hub = hub
        self.retention_hours = retention_hours
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self._next: int | None = None  # the offset to resume from
        self._marker: str | None = None
        self._unacked = 0

    @property
    def connected(self) -> bool:
        return (
            self.connection is not None
            and not self.connection.is_closed
            and self.channel is not None
            and not self.channel.is_closed
        )

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with growing pauses."""
        failures = 0
        while True:
            try:
                await self._consume()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("journal connection lost", error=f"{type(error).__name__}: {error}")
            finally:
                await self._close()
            await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
            failures += 1

    async def _consume(self) -> None:
        self.connection = await aio_pika.connect(self.url, timeout=10)
        self._unacked = 0
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await self._declare(channel)
        exchange = await channel.declare_exchange(
            EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for routing_key in ROUTING_KEYS:
            await queue.bind(exchange, routing_key=routing_key)
        if not self.hub.ready.is_set():
            self._marker = uuid.uuid4().hex
            await channel.default_exchange.publish(
                aio_pika.Message(self._marker.encode(), type=MARKER_TYPE), routing_key=STREAM
            )
        offset: int | str = "first" if self._next is None else self._next
        await queue.consume(self._on_message, arguments={"x-stream-offset": offset})
        log.info("journal consuming", offset=offset)
        self.channel = channel
        # A channel error (say, the stream deleted) ends consumption as surely as a lost link.
        closings = [
            asyncio.ensure_future(self.connection.closed()),
            asyncio.ensure_future(channel.closed()),
        ]
        try:
            await asyncio.wait(closings, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for closing in closings:
                closing.cancel()

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        """The stream as it exists (its first declarer's arguments win), else a new one."""
        assert self.connection is not None
        probe = await self.connection.channel()
        try:
            await probe.declare_queue(STREAM, passive=True)
        except ChannelNotFoundEntity:
            return await channel.declare_queue(
                STREAM, durable=True, arguments=stream_arguments(self.retention_hours)
            )
        with contextlib.suppress(Exception):
            await probe.close()
        return await channel.declare_queue(STREAM, passive=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aio-pika runs each delivery as a task, in arrival order; `_apply` is synchronous
        # and comes before the only await, so entries reach the hub in offset order.
        self._apply(message)
        self._unacked += 1
        if self._unacked >= ACK_EVERY:
            self._unacked = 0
            await message.ack(multiple=True)

    def _apply(self, message: AbstractIncomingMessage) -> None:
        offset = (message.headers or {}).get("x-stream-offset")
        if not isinstance(offset, int) or (self._next is not None and offset < self._next):
            return  # already read before a reconnect
        self._next = offset + 1
        if message.type == MARKER_TYPE:
            self.hub.advance(offset)
            if message.body.decode(errors="replace") == self._marker:
                self._marker = None
                self.hub.ready.set()
                log.info("journal caught up", seq=offset)
            return
        try:
            event = event_adapter.validate_json(message.body)
        except ValidationError as error:
            log.warning("unreadable journal entry", seq=offset, errors=error.error_count())
            self.hub.advance(offset)
            return
        try:
            self.hub.publish(offset, event)
        except Exception:  # one bad frame must not stop the journal
            log.exception("journal entry failed", seq=offset, type=event.type)

    async def _close(self) -> None:
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await connection.close()
