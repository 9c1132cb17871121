"""The worker through the real broker: subscribers, retries, deal.updated, probes, requeue."""

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from asgi_lifespan import LifespanManager
from faststream.rabbit import RabbitBroker

from common import bus
from common.events import DealUpdated, MessageReceived
from common.ids import deal_id_for_telegram
from common.models import BusinessConnection
from common.settings import Settings
from common.testing import Infrastructure, settings_for, settled_readiness
from sync_worker import consumers, live
from sync_worker.app import create_app
from sync_worker.live import Stores
from sync_worker.testing import deal_of, event_from_update, items_of, purge_queues, worker_env

CONNECTION = "AbCdEfGh0123456789_-business-conn-1"
DEAL = deal_id_for_telegram(CONNECTION, 222222222)


@pytest.fixture
async def worker_settings(infrastructure: Infrastructure, clean_database: None) -> Settings:
    return settings_for(infrastructure, dynamodb_messages_table=f"w_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def worker(worker_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    await purge_queues(worker_settings.rabbitmq_url.get_secret_value(), consumers.QUEUES)
    app = create_app(worker_settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://worker"
        ) as client,
    ):
        yield client


@pytest.fixture
async def stores(
    worker_settings: Settings, sessions: Any, dynamo: Any, worker: httpx.AsyncClient
) -> Stores:
    """The worker's own stores, read back by the test."""
    return Stores(sessions, dynamo, worker_settings.dynamodb_messages_table)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_sample_stream_through_the_broker_is_stored_and_announced(
    worker: httpx.AsyncClient,
    publisher: RabbitBroker,
    stores: Stores,
    samples: dict[str, dict[str, Any]],
    worker_settings: Settings,
) -> None:
    announced: asyncio.Queue[DealUpdated] = asyncio.Queue()
    listener = bus.make_broker(worker_settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    queue = bus.consumer_queue(f"test-{uuid.uuid4().hex[:6]}", "deal.updated")

    @listener.subscriber(queue, bus.EVENTS)
    async def on_deal_updated(event: DealUpdated) -> None:
        await announced.put(event)

    await listener.connect()
    await bus.declare_topology(listener, [queue.name])
    await listener.start()
    names = [name for name in samples if name != "business_connection_disabled"]

    for name in names:
        await bus.publish_event(publisher, event_from_update(samples[name]))
        await bus.publish_event(publisher, event_from_update(samples[name]))

    async def settled() -> bool:
        deal = await deal_of(stores, DEAL)
        async with stores.sessions() as session:
            connection = await session.get(BusinessConnection, CONNECTION)
        return (
            deal is not None
            and (deal.total_messages, deal.read_up_to) == (2, "5015")
            and connection is not None
            and connection.status == "active"
        )

    await eventually(settled)
    deal = await deal_of(stores, DEAL)
    assert deal is not None
    latest: DealUpdated | None = None
    while latest is None or latest.version < deal.version:
        latest = await asyncio.wait_for(announced.get(), 10)
    await listener.stop()
    assert (latest.total_messages, latest.unread_count) == (2, 0)
    assert latest.last_message is not None
    assert latest.last_message.text == "Thanks! Your order number is 42."
    assert len([i for i in await items_of(stores, DEAL) if i["sk"].startswith("m#")]) == 4
    async with stores.sessions() as session:
        connection = await session.get(BusinessConnection, CONNECTION)
    assert connection is not None
    assert (connection.status, connection.user_chat_id) == ("active", 111111111)


async def test_probes_answer_while_the_worker_runs(worker: httpx.AsyncClient) -> None:

    healthz = await worker.get("/healthz")
    readyz = await settled_readiness(worker)
    metrics = await worker.get("/metrics")

    assert healthz.status_code == 200
    assert readyz.status_code == 200, readyz.text
    assert readyz.json() == {"status": "ok"}
    assert "chat_sync_messages_retried_total" in metrics.text
    assert "sync_worker_live_batch_size_bucket" in metrics.text


async def test_failure_after_the_dynamodb_write_is_retried_to_a_consistent_state(
    worker: httpx.AsyncClient,
    publisher: RabbitBroker,
    stores: Stores,
    samples: dict[str, dict[str, Any]],
) -> None:
    failures: list[int] = []

    async def fail_once(_events: object) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("crash between DynamoDB and the commit")

    live.after_dynamo_write = fail_once
    try:
        await bus.publish_event(publisher, event_from_update(samples["business_message"]))

        async def stored() -> bool:
            deal = await deal_of(stores, DEAL)
            return deal is not None and deal.total_messages == 1

        await eventually(stored)
    finally:
        live.after_dynamo_write = None

    deal = await deal_of(stores, DEAL)
    assert failures == [1]
    assert deal is not None
    assert (deal.total_messages, deal.unread_count) == (1, 1)
    assert deal.synced_at is not None


async def test_parked_message_is_requeued_by_the_cli_and_then_stored(
    worker: httpx.AsyncClient,
    publisher: RabbitBroker,
    stores: Stores,
    samples: dict[str, dict[str, Any]],
    worker_settings: Settings,
    tmp_path: Path,
) -> None:
    queue = "sync-worker.telegram.message.received"
    event = event_from_update(samples["business_message"])
    assert isinstance(event, MessageReceived)
    await publisher.publish(
        bus.encode(event),
        exchange=bus.DEAD,
        routing_key=queue,
        persist=True,
        headers={bus.ATTEMPT_HEADER: 4, bus.ERROR_HEADER: "RuntimeError: was down"},
        content_type="application/json",
    )
    await asyncio.sleep(0.2)
    assert await deal_of(stores, DEAL) is None

    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sync_worker", "requeue-dead"],
        env=worker_env(worker_settings),
        cwd=tmp_path,
        capture_output=True,
        check=True,
        timeout=60,
    )

    async def stored() -> bool:
        deal = await deal_of(stores, DEAL)
        return deal is not None and deal.total_messages == 1

    await eventually(stored)
    lines = cli.stdout.decode().splitlines()
    assert f"{queue}: 1 requeued" in lines
    assert "sync-worker.telegram.messages.deleted: 0 requeued" in lines


async def test_missing_table_makes_readyz_name_dynamodb(
    infrastructure: Infrastructure, dynamo: Any
) -> None:
    settings = settings_for(infrastructure, dynamodb_messages_table=f"w_{uuid.uuid4().hex[:12]}")
    app = create_app(settings)

    async with LifespanManager(app) as manager:
        await dynamo.delete_table(TableName=settings.dynamodb_messages_table)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://worker"
        ) as client:
            readyz = await client.get("/readyz")

    assert readyz.status_code == 503
    assert readyz.json()["dependency"] == "dynamodb"


async def test_poison_event_is_parked_without_holding_back_its_neighbours(
    worker_settings: Settings,
    samples: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    sessions: Any,
    dynamo: Any,
) -> None:
    monkeypatch.setattr(bus, "RETRY_DELAYS_SECONDS", (1, 1))
    good = event_from_update(samples["business_message"])
    poison_update = samples["business_message_photo"]
    poison_update["business_message"]["message_id"] = 10**13  # beyond any sort key
    poison = event_from_update(poison_update)
    queue = "sync-worker.telegram.message.received"
    await purge_queues(worker_settings.rabbitmq_url.get_secret_value(), consumers.QUEUES)
    app = create_app(worker_settings)
    stores = Stores(sessions, dynamo, worker_settings.dynamodb_messages_table)
    broker = bus.make_broker(worker_settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    await broker.connect()

    async with LifespanManager(app):
        await asyncio.gather(bus.publish_event(broker, poison), bus.publish_event(broker, good))

        async def stored() -> bool:
            deal = await deal_of(stores, DEAL)
            return deal is not None and deal.total_messages == 1

        await eventually(stored)
        parked = await _parked(worker_settings, queue, str(poison.event_id))
    await broker.stop()

    assert parked is not None
    assert parked.message_id == str(poison.event_id)
    assert parked.headers[bus.ATTEMPT_HEADER] == 3
    assert str(parked.headers[bus.ERROR_HEADER]).startswith("ValueError: message id out of range")


async def test_body_that_is_no_event_is_parked_at_once(worker_settings: Settings) -> None:
    queue = "sync-worker.telegram.message.received"
    await purge_queues(worker_settings.rabbitmq_url.get_secret_value(), consumers.QUEUES)
    app = create_app(worker_settings)
    broker = bus.make_broker(worker_settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    await broker.connect()

    async with LifespanManager(app):
        await broker.publish(
            b'{"type": "telegram.message.received", "message": {}}',
            exchange=bus.EVENTS,
            routing_key="telegram.message.received",
            message_id="no-event",
            content_type="application/json",
            persist=True,
        )
        parked = await _parked(worker_settings, queue, "no-event")
    await broker.stop()

    assert parked is not None
    assert parked.headers[bus.ATTEMPT_HEADER] == 1
    assert str(parked.headers[bus.ERROR_HEADER]).startswith("ValidationError")


async def _parked(
    settings: Settings, queue: str, message_id: str
) -> aio_pika.abc.AbstractIncomingMessage | None:
    """The message `message_id` once it is in `queue`'s parked queue (others are taken off)."""
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        dead = await channel.get_queue(bus.dead_queue_name(queue))
        for _ in range(100):
            message = await dead.get(fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            await message.ack()
            if message.message_id == message_id:
                return message
    return None


async def test_production_start_with_a_well_known_password_is_refused(
    worker_settings: Settings, tmp_path: Path
) -> None:
    env = worker_env(worker_settings, DEBUG="false", POSTGRES_PASSWORD="postgres")
    del env["DATABASE_URL"]

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sync_worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "POSTGRES_PASSWORD" in result.stderr.decode()
