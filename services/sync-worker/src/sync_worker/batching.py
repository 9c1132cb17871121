"""Group commit: events that arrive while a batch is being written form the next batch.

Each consumer hands its event in and waits; the handler returns (and FastStream acks) only
once the event's batch is committed and its `deal.updated` events are published. With a
quiet queue a batch is one event; under load it is everything the prefetch let in, so there
is never a commit per message while messages queue up.
"""

import asyncio
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

Persist = Callable[[Sequence[LiveEvent]], Awaitable[list[DealUpdated]]]
Publish = Callable[[DealUpdated], Awaitable[None]]


class Batcher:
    def __init__(self, persist: Persist, publish: Publish, *, max_batch: int = 500) -> None:
        self._persist = persist
        self._publish = publish
        self._max_batch = max_batch
        self._pending: list[tuple[LiveEvent, asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, event: LiveEvent) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            await self._run(batch)

    async def _run(self, batch: list[tuple[LiveEvent, asyncio.Future[None]]]) -> None:
        started = time.perf_counter()
        try:
            updates = await self._persist([event for event, _ in batch])
            await asyncio.gather(*(self._publish(update) for update in updates))
        except Exception as error:
            if len(batch) > 1:
                # One bad event must not fail its neighbours: each is tried alone.
                log.warning(
                    "batch failed, trying its events one by one", size=len(batch), error=repr(error)
                )
                for entry in batch:
                    await self._run([entry])
                return
            EVENTS_FAILED.labels(type=batch[0][0].type).inc()
            _settle(batch, error)
            return
        BATCH_SIZE.observe(len(batch))
        BATCH_SECONDS.observe(time.perf_counter() - started)
        for event, _ in batch:
            EVENTS_WRITTEN.labels(type=event.type).inc()
        _settle(batch, None)


def _settle(
    batch: list[tuple[LiveEvent, asyncio.Future[None]]], error: BaseException | None
) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
