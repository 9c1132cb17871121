"""Group commit: events that arrive while a batch is being written form the next batch.

Each consumer hands its event in and waits; the handler returns (and FastStream acks) only
once the event's batch is committed and its `deal.updated` events are published. With a
quiet queue a batch is one event; under load it is everything the prefetch let in, so there
is never a commit per message while messages queue up.

The two halves are pipelined: while batch N is committed to PostgreSQL, the DynamoDB items of
batch N+1 are written. Each event still has its items written before its commit, and the
stores do not depend on the order between events.
"""

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from prometheus_client import Counter, Histogram

from common.events import DealUpdated
from sync_worker.store import LiveEvent

log = structlog.get_logger(__name__)

EVENTS_WRITTEN = Counter(
    "sync_worker_live_events_total", "Live Telegram events written to both stores.", ["type"]
)
EVENTS_FAILED = Counter(
    "sync_worker_live_events_failed_total",
    "Live events whose write failed (then retried).",
    ["type"],
)
BATCH_SIZE = Histogram(
    "sync_worker_live_batch_size",
    "Events per group commit.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
BATCH_SECONDS = Histogram(
    "sync_worker_live_batch_seconds", "Time to write one batch to both stores and announce it."
)
STAGE_SECONDS = Histogram(
    "sync_worker_live_batch_stage_seconds",
    "Time of one batch in each stage: DynamoDB writes, waiting for the batch before it to "
    "commit, the PostgreSQL commit, the deal.updated publishes.",
    ["stage"],
)
_WRITE, _WAIT, _COMMIT, _PUBLISH = (
    STAGE_SECONDS.labels(stage=stage) for stage in ("write", "wait", "commit", "publish")
)

# The largest group commit; a consumer's prefetch must let in two, or the pipeline stalls.
# Kept small because everything a batch ends with happens at once: its acks, its deal.updated
# publishes and RabbitMQ refilling the prefetch. On two shared cores at 300 updates/s the
# webhook → WebSocket p99 was 33-129 ms with batches of 250, 23-27 ms with 50 and 14-19 ms
# with 25; the persistence benchmark's throughput was the same with each (docs/benchmarks.md).
MAX_BATCH = 25

Write = Callable[[Sequence[LiveEvent]], Awaitable[None]]
Commit = Callable[[Sequence[LiveEvent]], Awaitable[list[DealUpdated]]]
Publish = Callable[[DealUpdated], Awaitable[None]]
_Entry = tuple[LiveEvent, "asyncio.Future[None]"]


class Batcher:
    def __init__(
        self, write: Write, commit: Commit, publish: Publish, *, max_batch: int = MAX_BATCH
    ) -> None:
        self._write = write
        self._commit = commit
        self._publish = publish
        self._max_batch = max_batch
        self._pending: list[_Entry] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, event: LiveEvent) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        committing: asyncio.Task[None] | None = None
        while self._pending or committing is not None:
            if not self._pending:
                assert committing is not None
                await committing
                committing = None
                continue
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            started = time.perf_counter()
            try:
                await self._write([event for event, _ in batch])
                written = True
            except Exception as error:
                log.warning("batch write failed", size=len(batch), error=repr(error))
                written = False
            wrote = time.perf_counter()
            _WRITE.observe(wrote - started)
            if committing is not None:
                await committing
            _WAIT.observe(time.perf_counter() - wrote)
            committing = asyncio.create_task(self._finish(batch, written, started))

    async def _finish(self, batch: list[_Entry], written: bool, started: float) -> None:
        if written:
            try:
                await self._commit_and_publish(batch)
            except Exception as error:
                if len(batch) == 1:
                    _fail(batch[0], error)
                    return
                log.warning("batch failed, trying its events one by one", error=repr(error))
            else:
                BATCH_SIZE.observe(len(batch))
                BATCH_SECONDS.observe(time.perf_counter() - started)
                return
        # One bad event must not fail its neighbours: each is tried alone, both halves.
        for entry in batch:
            try:
                await self._write([entry[0]])
                await self._commit_and_publish([entry])
            except Exception as error:
                _fail(entry, error)

    async def _commit_and_publish(self, batch: list[_Entry]) -> None:
        started = time.perf_counter()
        updates = await self._commit([event for event, _ in batch])
        committed = time.perf_counter()
        await asyncio.gather(*(self._publish(update) for update in updates))
        _COMMIT.observe(committed - started)
        _PUBLISH.observe(time.perf_counter() - committed)
        # Counted per type, not per event: a labelled child costs a lock and a lookup.
        for kind, count in collections.Counter(event.type for event, _ in batch).items():
            EVENTS_WRITTEN.labels(type=kind).inc(count)
        for _, future in batch:
            if not future.done():
                future.set_result(None)


def _fail(entry: _Entry, error: Exception) -> None:
    event, future = entry
    EVENTS_FAILED.labels(type=event.type).inc()
    if not future.done():
        future.set_exception(error)
