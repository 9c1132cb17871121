"""Persistence: messages/s the sync-worker moves from its queue into DynamoDB and PostgreSQL,
and its lag at half that rate, next to the raw rate of the same operations.

Chat Sync: N `telegram.message.received` events (200 chats of one connection) are published
into `sync-worker.telegram.message.received` before the worker starts; the rate is measured
in PostgreSQL (message keys committed over time). Then events are published at half that rate
while the worker runs; an event's lag is the time from its publish to the `deal.updated` that
reports its deal's newest message (published by the worker after the commit).

Floor: the same work without the worker, from this process, against the same servers: per
batch of the worker's largest group commit (`sync_worker.batching.MAX_BATCH`), the same
conditional `UpdateItem` per message at the worker's concurrency (32), then one PostgreSQL
transaction with `executemany` (customers, deals, lock, message keys, counters). Reported
beside it: the same items through raw `BatchWriteItem` (25 per call, 32 in flight) instead of
`UpdateItem`.
"""

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import amqp, telegram
from bench.harness import (
    NotMeasured,
    Row,
    ms,
    not_measured,
    paced,
    percentile,
    quiet_gc,
    rate,
    ratio,
    wait_until,
)
from bench.infra import Config, by_label, free_port, scrape, summed
from common import bus
from common.dynamo import dynamodb_client, to_attributes
from common.events import DealUpdated, MessageReceived
from common.ids import customer_id_for_telegram, deal_id_for_telegram, telegram_message_key
from common.messages import telegram_message_item
from sync_worker.batching import MAX_BATCH

NAME = "persistence"
WHAT = "persistence"
TARGET = "≥ 50% of the floor; lag < 1 s (p99) at half the achieved rate"
OWNER = 710_000_001
CHATS = 200
BATCH = MAX_BATCH  # the worker's largest group commit
CONCURRENCY = 32  # the worker's DynamoDB writes in flight
ROUTING_KEY = "telegram.message.received"


def _events(tag: str, count: int, first_update: int) -> list[MessageReceived]:
    connection = f"BenchPersist-{tag}"
    events: list[MessageReceived] = []
    for index in range(count):
        chat = 600_000_000 + index % CHATS
        update = telegram.business_message(
            first_update + index, OWNER, chat, index // CHATS + 1, f"persist-{tag}-{index}",
            connection=connection,
        )  # fmt: skip
        events.append(telegram.message_event(update, OWNER))
    return events


async def run(config: Config) -> list[Row]:
    count = config.size(10_000, 2_000)
    half_seconds = config.seconds(15, 6)
    tag = uuid.uuid4().hex[:8]
    data: dict[str, Any] = {"messages": count, "chats": CHATS, "batch": BATCH}

    floor_rate, batch_rate = await _floors(config, _events(f"floor{tag}", count, 1), data)

    events = _events(f"live{tag}", count, 10_000_000)
    connection = events[0].business_connection_id
    async with amqp.channel(config.stack.rabbitmq_url) as chan:
        queue = await amqp.consumer_queue(chan, "sync-worker", "telegram.message.received")
        await queue.purge()
        exchange = await amqp.events_exchange(chan)
        await amqp.publish_events(exchange, events)
        sink = await amqp.sink(chan, "bench.persistence.deals", ["deal.updated"])
        await sink.purge()

        port = free_port()
        worker = config.service("sync-worker", port=port, SYNC_WORKER_PORT=str(port))
        try:
            await worker.start()
        except NotMeasured as error:
            return [not_measured(NAME, WHAT, TARGET, str(error))]
        try:
            started = await scrape(port)
            achieved, complete = await _drain_rate(config, connection, count, data)
            data["worker"]["batches"] = _batches(started, await scrape(port))
            await sink.purge()
            half_rate = max(achieved / 2, 1.0)
            before = await scrape(port)
            lags = await _lag(exchange, sink, f"half{tag}", half_rate, half_seconds, data)
            data["lag"]["batches"] = _batches(before, await scrape(port))
        finally:
            await worker.stop()
            await sink.delete(if_unused=False, if_empty=False)

    share = ratio(achieved, floor_rate)
    p99 = percentile(lags, 99)
    passed = share is not None and share >= 0.5 and p99 < 1.0 and complete
    figure = (
        f"{rate(achieved, ' msg/s')}; lag at {rate(half_rate, ' msg/s')}: "
        f"p50 {ms(percentile(lags, 50))}, p99 {ms(p99)}, max {ms(max(lags, default=0.0))}"
    )
    floor = (
        f"UpdateItem + executemany {rate(floor_rate, ' msg/s')} "
        f"(BatchWriteItem + executemany {rate(batch_rate, ' msg/s')})"
    )
    note = "" if complete else "worker did not persist every message in time"
    return [Row(NAME, WHAT, figure, floor, share, TARGET, passed, note, data)]


async def _drain_rate(
    config: Config, connection: str, count: int, data: dict[str, Any]
) -> tuple[float, bool]:
    """Poll PostgreSQL until every message is committed; rate from the first commit on.

    The deals' counters move in the transaction that inserts the message keys. Counting the
    keys themselves meant a (parallel) scan of the whole table 20 times a second, which took
    half a core from the worker it measures.
    """
    database = await asyncpg.connect(config.stack.postgres_url)
    query = "SELECT coalesce(sum(total_messages), 0) FROM deal WHERE business_connection_id = $1"
    first: tuple[float, int] | None = None
    stored = 0
    deadline = time.monotonic() + config.seconds(240, 120)
    try:
        while time.monotonic() < deadline:
            stored = int(await database.fetchval(query, connection))
            now = time.monotonic()
            if stored and first is None:
                first = (now, stored)
            if stored >= count:
                break
            await asyncio.sleep(0.05)
    finally:
        await database.close()
    if first is None:
        raise NotMeasured("the sync-worker committed no message")
    elapsed = time.monotonic() - first[0]
    achieved = (stored - first[1]) / elapsed if elapsed > 0 else float("nan")
    data["worker"] = {"stored": stored, "seconds": round(elapsed, 2), "rate": round(achieved, 1)}
    return achieved, stored >= count


STAGES = "sync_worker_live_batch_stage_seconds_sum"


def _batches(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The worker's group commits between two scrapes (the drain, the lag phase): how many,
    how big, how long, and how long in each stage (DynamoDB writes, waiting, the commit, the
    publishes)."""

    def grown(name: str) -> float:
        return summed(after, name) - summed(before, name)

    count = grown("sync_worker_live_batch_size_count")
    if not count:
        return {"count": 0}
    stages_before = by_label(before, STAGES, "stage")
    return {
        "count": count,
        "mean_size": round(grown("sync_worker_live_batch_size_sum") / count, 1),
        "mean_ms": round(grown("sync_worker_live_batch_seconds_sum") / count * 1000, 1),
        "mean_stage_ms": {
            stage: round((seconds - stages_before.get(stage, 0.0)) / count * 1000, 1)
            for stage, seconds in by_label(after, STAGES, "stage").items()
        },
    }


async def _lag(
    exchange: Any, sink: Any, tag: str, half_rate: float, seconds: float, data: dict[str, Any]
) -> list[float]:
    """Publish at `half_rate`; lag = publish → the deal.updated covering the message."""
    events = _events(tag, max(1, int(half_rate * seconds)), 20_000_000)
    pending: dict[str, list[tuple[int, float]]] = {}
    lags: list[float] = []

    async def on_update(message: Any) -> None:
        async with message.process():
            update = DealUpdated.model_validate_json(message.body)
            waiting = pending.get(str(update.deal_id), [])
            newest = int(update.last_message_id or 0)
            now = time.monotonic()
            while waiting and waiting[0][0] <= newest:
                lags.append(now - waiting.pop(0)[1])

    # Encoded before the clock starts, published with this process's collector paused: the
    # generator shares the two cores with the worker, so it should cost them little.
    ready = [
        (
            str(deal_id_for_telegram(event.business_connection_id, event.chat_id)),
            int(event.message_id),
            amqp.message(bus.encode(event), ROUTING_KEY, str(event.event_id)),
        )
        for event in events
    ]
    tag_consumer = await sink.consume(on_update)
    tasks: list[asyncio.Task[Any]] = []
    with quiet_gc():
        async for index, _scheduled in paced(len(ready), half_rate):
            deal, message_id, body = ready[index]
            pending.setdefault(deal, []).append((message_id, time.monotonic()))
            tasks.append(asyncio.create_task(exchange.publish(body, ROUTING_KEY, timeout=10)))
        await asyncio.gather(*tasks)
        await wait_until(lambda: len(lags) >= len(events), 30, 0.05)
    await sink.cancel(tag_consumer)
    data["lag"] = {
        "rate": round(half_rate, 1),
        "published": len(events),
        "observed": len(lags),
        "p50_ms": round(percentile(lags, 50) * 1000, 1),
        "p99_ms": round(percentile(lags, 99) * 1000, 1),
    }
    missing = len(events) - len(lags)
    # An event never reported counts as lagging by the whole wait.
    return lags + [30.0] * missing


# --- the floor -------------------------------------------------------------------------------


async def _floors(
    config: Config, events: Sequence[MessageReceived], data: dict[str, Any]
) -> tuple[float, float]:
    settings = config.stack.settings()
    table = config.stack.table
    database = await asyncpg.connect(config.stack.postgres_url)
    try:
        async with dynamodb_client(settings) as dynamo:
            begin = time.perf_counter()
            for start in range(0, len(events), BATCH):
                batch = events[start : start + BATCH]
                await _gather(_update_item(dynamo, table, _item(event)) for event in batch)
                await _postgres(database, batch)
            update_rate = len(events) / (time.perf_counter() - begin)

            items = [_item(event) for event in events]
            for item in items:
                item["deal_id"] = "batch-" + item["deal_id"]
            begin = time.perf_counter()
            for start in range(0, len(items), BATCH):
                chunk = items[start : start + BATCH]
                await _gather(
                    _batch_write(dynamo, table, chunk[offset : offset + 25])
                    for offset in range(0, len(chunk), 25)
                )
                await _postgres(database, events[start : start + BATCH], suffix="b")
            batch_rate = len(events) / (time.perf_counter() - begin)
    finally:
        await database.close()
    data["floor"] = {
        "update_item_rate": round(update_rate, 1),
        "batch_write_rate": round(batch_rate, 1),
    }
    return update_rate, batch_rate


def _item(event: MessageReceived) -> dict[str, Any]:
    deal = str(deal_id_for_telegram(event.business_connection_id, event.chat_id))
    return telegram_message_item(
        deal_id=deal,
        sort_key=telegram_message_key(event.message_id),
        business_connection_id=event.business_connection_id,
        owner_user_id=event.owner_user_id,
        message=event.message,
    )


async def _gather(awaitables: Any) -> None:
    window = asyncio.Semaphore(CONCURRENCY)

    async def limited(awaitable: Any) -> None:
        async with window:
            await awaitable

    await asyncio.gather(*(limited(awaitable) for awaitable in awaitables))


async def _update_item(dynamo: Any, table: str, item: dict[str, Any]) -> None:
    """The worker's write: SET every attribute unless a newer edit is stored."""
    names = {"#edit_ts": "edit_ts"}
    values: dict[str, Any] = {":edit_ts": item.get("edit_ts", 0)}
    sets: list[str] = []
    for index, (name, value) in enumerate(item.items()):
        if name in ("deal_id", "sk") or value is None:
            continue
        names[f"#a{index}"] = name
        values[f":a{index}"] = value
        sets.append(f"#a{index} = :a{index}")
    await dynamo.update_item(
        TableName=table,
        Key=to_attributes({"deal_id": item["deal_id"], "sk": item["sk"]}),
        UpdateExpression="SET " + ", ".join(sets),
        ConditionExpression="attribute_not_exists(#edit_ts) OR #edit_ts <= :edit_ts",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=to_attributes(values),
    )


async def _batch_write(dynamo: Any, table: str, items: list[dict[str, Any]]) -> None:
    requests: list[Any] = [{"PutRequest": {"Item": to_attributes(item)}} for item in items]
    while requests:
        response = await dynamo.batch_write_item(RequestItems={table: requests})
        requests = list(response.get("UnprocessedItems", {}).get(table, []))


async def _postgres(database: Any, batch: Sequence[MessageReceived], *, suffix: str = "") -> None:
    """One transaction: the rows the worker writes for a batch, with executemany."""
    now = datetime.now(UTC)
    deals: dict[uuid.UUID, MessageReceived] = {}
    for event in batch:
        deals[_deal_id(event, suffix)] = event
    async with database.transaction():
        await database.executemany(
            "INSERT INTO customer (id, source, external_id, name, first_name, last_name, "
            "username, source_date) VALUES ($1, 'telegram', $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = now()",
            [
                (customer_id_for_telegram(e.chat_id), e.chat_id, "Customer", "Customer",
                 e.chat_id, None, e.message.date)
                for e in deals.values()
            ],
        )  # fmt: skip
        await database.executemany(
            "INSERT INTO deal (id, source, external_id, business_connection_id, chat_id, "
            "owner_user_id, customer_id, total_messages, unread_count, sync_status, version) "
            "VALUES ($1, 'telegram', $2, $3, $4, $5, $6, 0, 0, 'partial', 0) "
            "ON CONFLICT DO NOTHING",
            [
                (deal, f"tg:{e.business_connection_id}{suffix}:{e.chat_id}",
                 e.business_connection_id + suffix, int(e.chat_id), int(e.owner_user_id),
                 customer_id_for_telegram(e.chat_id))
                for deal, e in sorted(deals.items())
            ],
        )  # fmt: skip
        await database.fetch(
            "SELECT id FROM deal WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
            sorted(deals),
        )
        await database.executemany(
            "INSERT INTO message_key (deal_id, message_id, sort_key, direction, source, state, "
            "deleted, sent_at) VALUES ($1, $2, $3, 'incoming', 'live', 'present', false, $4) "
            "ON CONFLICT DO NOTHING",
            [
                (_deal_id(e, suffix), e.message_id, telegram_message_key(e.message_id),
                 e.message.date)
                for e in batch
            ],
        )  # fmt: skip
        counts: dict[uuid.UUID, int] = {}
        for event in batch:
            counts[_deal_id(event, suffix)] = counts.get(_deal_id(event, suffix), 0) + 1
        await database.executemany(
            "UPDATE deal SET total_messages = total_messages + $2, unread_count = unread_count "
            "+ $2, last_message_id = $3, last_message_key = $4, last_message_at = $5, "
            "last_message = $6, synced_at = coalesce(synced_at, $7), sync_status = 'synced', "
            "version = version + 1, updated_at = now() WHERE id = $1",
            [
                (deal, counts[deal], e.message_id, telegram_message_key(e.message_id),
                 e.message.date, '{"text": "preview", "direction": "incoming"}', now)
                for deal, e in sorted(deals.items())
            ],
        )  # fmt: skip


def _deal_id(event: MessageReceived, suffix: str) -> uuid.UUID:
    return deal_id_for_telegram(event.business_connection_id + suffix, event.chat_id)
