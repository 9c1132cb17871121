"""Webhook ingest: updates/s telegram-ingest accepts (each one confirmed into RabbitMQ), next to
a bare uvicorn app answering the same POST and raw aio-pika publishing with confirms.

Load: genuine `business_message` updates with the secret header over 40 keep-alive connections
(Telegram's default `max_connections`), as fast as answers come; then an open loop at half the
achieved rate, whose p99 is the latency target. Beside it, for scale: raw aio-pika publishing
the event at that rate in the same open loop, whose p99 is RabbitMQ's own confirm time.

Every `telegram.message.received` lands in the queues the catalogue binds to it (the
sync-worker's and the avatar worker's) and in this benchmark's sink, for the floor and the
service alike: the queues are declared before the floor runs and emptied before each phase,
so RabbitMQ does the same work per message in both.
"""

import math
import sys

from aio_pika.abc import AbstractChannel, AbstractQueue

from bench import amqp, telegram
from bench.harness import NotMeasured, Row, ms, not_measured, percentile, rate, ratio
from bench.infra import Config, Service, by_label, free_port, scrape
from bench.loadgen import BodySource, Load, closed_loop, open_loop
from common import bus

NAME = "ingest"
WHAT = "webhook ingest"
TARGET = "≥ 50% of the lower floor; p99 ≤ 10 ms at half the achieved rate"
CONNECTIONS = 40
OWNER = 700_000_001
CHATS = 50
SINK = "bench.ingest.sink"
ROUTING_KEY = "telegram.message.received"


async def _catalogue_queues(chan: AbstractChannel) -> list[AbstractQueue]:
    """The service queues the catalogue binds to the benchmark's routing key."""
    return [
        await amqp.consumer_queue(chan, consumer.service, consumer.routing_key)
        for consumer in bus.CATALOGUE_CONSUMERS
        if consumer.routing_key == ROUTING_KEY
    ]


def _bodies(updates: telegram.Updates, tag: str) -> BodySource:
    def make(index: int) -> bytes:
        return updates.message(OWNER, 500_000_000 + index % CHATS, f"{tag}-{index}")

    return make


async def run(config: Config) -> list[Row]:
    count = config.size(8_000, 2_000)
    seconds = config.seconds(20, 8)
    half_seconds = config.seconds(10, 5)
    url_path = "/telegram/webhook/"
    updates = telegram.Updates(start=200_000_000)
    data: dict[str, object] = {"connections": CONNECTIONS, "chats": CHATS}

    async with amqp.channel(config.stack.rabbitmq_url) as chan:
        sink = await amqp.sink(chan, SINK, ["telegram.#"])
        queues = [sink, *await _catalogue_queues(chan)]
        try:
            # Floor 1: a bare uvicorn app answering the same POST.
            port = free_port()
            bare = Service(
                "floor-http",
                [sys.executable, "-m", "bench.floors", "http", "--port", str(port)],
                config.stack.env(),
                port=port,
                logs=config.stack.logs,
            )
            await bare.start()
            try:
                url = f"http://127.0.0.1:{port}{url_path}"
                await closed_loop(
                    url,
                    _bodies(updates, "warm"),
                    telegram.HEADERS,
                    connections=CONNECTIONS,
                    count=500,
                    seconds=5,
                )
                bare_load = await closed_loop(
                    url,
                    _bodies(updates, "floor"),
                    telegram.HEADERS,
                    connections=CONNECTIONS,
                    count=count,
                    seconds=seconds,
                )
            finally:
                await bare.stop()
            data["bare_uvicorn"] = bare_load.summary()

            # Floor 2: raw aio-pika, persistent, confirms, ~100 in flight, event-sized bodies.
            sample = telegram.business_message(1, OWNER, 500_000_000, 1, "floor")
            event_body = telegram.message_event(sample, OWNER).model_dump_json().encode()
            exchange = await amqp.events_exchange(chan)
            await _purge(queues)
            confirmed, elapsed = await amqp.publish_window(
                exchange,
                lambda _i: event_body,
                ROUTING_KEY,
                count=count * 2,
                seconds=seconds,
            )
            pika_rate = confirmed / elapsed if elapsed else math.nan
            data["aio_pika_confirms"] = {"published": confirmed, "rate_per_s": round(pika_rate, 1)}
            data["event_bytes"] = len(event_body)
            data["queues"] = [queue.name for queue in queues]
            await _purge(queues)

            # Chat Sync: telegram-ingest through its console script.
            port = free_port()
            service = config.service("telegram-ingest", port=port, TELEGRAM_INGEST_PORT=str(port))
            try:
                await service.start()
            except NotMeasured as error:
                return [not_measured(NAME, WHAT, TARGET, str(error))]
            try:
                url = f"http://127.0.0.1:{port}{url_path}"
                connect = await closed_loop(
                    url,
                    lambda _i: updates.connection(OWNER),
                    telegram.HEADERS,
                    connections=1,
                    count=1,
                    seconds=10,
                )
                if connect.accepted != 1:
                    raise NotMeasured(
                        f"business_connection update answered {dict(connect.statuses)}"
                    )
                await closed_loop(
                    url,
                    _bodies(updates, "warm"),
                    telegram.HEADERS,
                    connections=CONNECTIONS,
                    count=500,
                    seconds=5,
                )
                await _purge(queues)
                full = await closed_loop(
                    url,
                    _bodies(updates, "max"),
                    telegram.HEADERS,
                    connections=CONNECTIONS,
                    count=count,
                    seconds=seconds,
                )
                await _purge(queues)
                half_rate = max(full.rate / 2, 1.0)
                before = await scrape(port)
                half = await open_loop(
                    url,
                    _bodies(updates, "half"),
                    telegram.HEADERS,
                    rate=half_rate,
                    seconds=half_seconds,
                )
                after = await scrape(port)
                data["confirms_half"] = _shares(CONFIRMS, before, after)
                data["answers_half"] = _shares(ANSWERS, before, after)
            except NotMeasured as error:
                return [not_measured(NAME, WHAT, TARGET, str(error))]
            finally:
                await service.stop()
            data["telegram_ingest_max"] = full.summary()
            data["telegram_ingest_half"] = {"rate_per_s": round(half_rate, 1), **half.summary()}
            # For scale: how fast RabbitMQ alone confirms at that rate, in the same open loop.
            await _purge(queues)
            raw = await amqp.publish_open_loop(
                exchange, event_body, ROUTING_KEY, rate=half_rate, seconds=half_seconds
            )
            data["aio_pika_half"] = {
                "rate_per_s": round(half_rate, 1),
                "published": len(raw),
                "p50_ms": round(percentile(raw, 50) * 1000, 2),
                "p99_ms": round(percentile(raw, 99) * 1000, 2),
            }
        finally:
            await _purge(queues[1:])
            await sink.delete(if_unused=False, if_empty=False)

    return [_row(full, half, half_rate, bare_load, pika_rate, data, raw)]


CONFIRMS = "telegram_ingest_publish_confirm_seconds_bucket"
ANSWERS = "telegram_ingest_webhook_seconds_bucket"


def _shares(
    histogram: str, before_samples: dict[str, float], after_samples: dict[str, float]
) -> dict[str, float]:
    """Of the half-rate phase's confirms (or answers, as the service timed them), the share
    within each bound. The two histograms share their buckets: where the shares agree, the
    webhook's tail is the broker's."""
    before = by_label(before_samples, histogram, "le")
    after = by_label(after_samples, histogram, "le")
    total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    if not total:
        return {}
    return {
        f"within_{bound}_s": round((after[bound] - before.get(bound, 0.0)) / total, 4)
        for bound in ("0.005", "0.01", "0.025", "0.05", "0.1")
        if bound in after
    }


def _within_10_ms(data: dict[str, object]) -> str:
    """How many of the half-rate answers the service gave within 10 ms, beside how many of
    its confirms came within 10 ms: the part of the tail that is the broker's."""
    answers, confirms = data.get("answers_half"), data.get("confirms_half")
    if not isinstance(answers, dict) or not isinstance(confirms, dict):
        return ""
    key = "within_0.01_s"
    if key not in answers or key not in confirms:
        return ""
    return f" (within 10 ms: {answers[key]:.1%} answered, {confirms[key]:.1%} confirmed)"


async def _purge(queues: list[AbstractQueue]) -> None:
    for queue in queues:
        await queue.purge()


def _row(
    full: Load,
    half: Load,
    half_rate: float,
    bare: Load,
    pika_rate: float,
    data: dict[str, object],
    raw_half: list[float],
) -> Row:
    floor = min(bare.rate, pika_rate)
    share = ratio(full.rate, floor)
    rejected = sum(n for status, n in full.statuses.items() if not 200 <= status < 300)
    passed = share is not None and share >= 0.5 and half.p(99) <= 0.010 and rejected == 0
    figure = (
        f"{rate(full.rate)} accepted (p50 {ms(full.p(50))}, p99 {ms(full.p(99))}); "
        f"at {rate(half_rate)}: p50 {ms(half.p(50))}, p99 {ms(half.p(99))}"
        f"{_within_10_ms(data)}"
    )
    floor_text = (
        f"bare uvicorn {rate(bare.rate)} (p99 {ms(bare.p(99))}); "
        f"aio-pika confirms {rate(pika_rate)}, and at {rate(half_rate)}: "
        f"p50 {ms(percentile(raw_half, 50))}, p99 {ms(percentile(raw_half, 99))}"
    )
    note = f"{rejected} non-2xx answers" if rejected else ""
    return Row(NAME, WHAT, figure, floor_text, share, TARGET, passed, note, data)
