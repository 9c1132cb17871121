"""Test support for batch sync (imported by tests only): the dev server over real HTTP with
extra faults, runners wired to the test infrastructure, and a snapshot of the imported state."""

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from faststream.rabbit import RabbitBroker, RabbitQueue
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from common.bus import EVENTS, publish_event
from common.dynamo import dynamodb_client, ensure_messages_table, from_attributes
from common.events import Event, event_adapter
from common.models import Customer, Deal, MessageKey, SyncRetryChat, SyncRun
from common.settings import Settings
from sync_worker.batch.client import ExternalApi, RetryPolicy
from sync_worker.batch.deps import Deps
from sync_worker.batch.runner import Runner, RunnerConfig
from sync_worker.devserver.app import Faults, build_app
from sync_worker.devserver.data import Dataset

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

TOKEN = "batch-test-token"  # noqa: S105 - the dev server's test token
FAST_RETRY = RetryPolicy(attempts=6, backoff_base=0.02, backoff_max=0.2)


@dataclass
class Chaos:
    """ASGI wrapper around the dev server: per-path failures, slow calls, a request log."""

    app: ASGIApp
    fail: Callable[[str, str], bool] = lambda _path, _query: False
    slow_every: int = 0  # every n-th call sleeps `slow_seconds` first
    slow_seconds: float = 0.0
    requests: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, query = scope["path"], scope.get("query_string", b"").decode()
        self.requests.append(path)
        if self.slow_every and len(self.requests) % self.slow_every == 0:
            await asyncio.sleep(self.slow_seconds)
        if self.fail(path, query):
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b'{"error": "down"}'})
            return
        await self.app(scope, receive, send)


@dataclass
class Upstream:
    dataset: Dataset
    faults: Faults
    chaos: Chaos
    url: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def upstream(
    dataset: Dataset, faults: Faults | None = None, token: str | None = TOKEN
) -> Iterator[Upstream]:
    """The dev server on a free loopback port, served by uvicorn in a thread of its own."""
    faults = faults or Faults()
    chaos = Chaos(build_app(dataset, token=token, faults=faults))
    port = free_port()
    config = uvicorn.Config(
        chaos, host="127.0.0.1", port=port, log_level="error", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dev server did not start")
        time.sleep(0.01)
    try:
        yield Upstream(dataset, faults, chaos, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(10)


def api_for(
    up: Upstream, *, token: str = TOKEN, timeout: float = 5.0, retry: RetryPolicy = FAST_RETRY
) -> ExternalApi:
    return ExternalApi(up.url, token, timeout=timeout, retry=retry, concurrency=8)


@dataclass
class Env:
    sessions: async_sessionmaker[AsyncSession]
    dynamo: "DynamoDBClient"
    table: str
    broker: RabbitBroker
    events: "EventTap"

    def runner(
        self,
        api: ExternalApi,
        *,
        owner: str | None = None,
        config: RunnerConfig | None = None,
        page_size: int = 5,
        message_page_size: int = 7,
    ) -> Runner:
        deps = Deps(
            sessions=self.sessions,
            dynamo=self.dynamo,
            table=self.table,
            api=api,
            publish=partial(publish_event, self.broker),
            page_size=page_size,
            message_page_size=message_page_size,
        )
        return Runner(deps, config or RunnerConfig(lease_seconds=5, scan_seconds=0.1), owner=owner)


async def new_table(dynamo: "DynamoDBClient") -> str:
    table = f"batch_test_{uuid.uuid4().hex[:12]}"
    await ensure_messages_table(dynamo, table)
    return table


class EventTap:
    """A queue bound to every event, drained by tests."""

    def __init__(self, broker: RabbitBroker, name: str) -> None:
        self.broker, self.name = broker, name
        self._queue: Any = None

    async def declare(self) -> None:
        # Exclusive: gone with the connection, so no test leaves a catch-all binding behind.
        self._queue = await self.broker.declare_queue(
            RabbitQueue(self.name, exclusive=True, auto_delete=True)
        )
        exchange = await self.broker.declare_exchange(EVENTS)
        await self._queue.bind(exchange, routing_key="#")

    async def drain(self) -> list[Event]:
        events: list[Event] = []
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            events.append(event_adapter.validate_json(message.body))
        return events


async def create_run(
    sessions: async_sessionmaker[AsyncSession],
    *,
    max_date: datetime | None = None,
    resumed_from: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A pending run as the gateway inserts it."""
    run_id = run_id or uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(
            SyncRun(id=run_id, status="pending", max_date=max_date, resumed_from=resumed_from)
        )
    return run_id


async def run_once(runner: Runner, run_id: uuid.UUID) -> SyncRun:
    assert await runner.start(run_id)
    await runner.wait()
    return await load_run(runner.deps.sessions, run_id)


async def load_run(sessions: async_sessionmaker[AsyncSession], run_id: uuid.UUID) -> SyncRun:
    async with sessions() as session:
        return await session.get_one(SyncRun, run_id)


async def wait_for_status(
    sessions: async_sessionmaker[AsyncSession],
    run_id: uuid.UUID,
    statuses: set[str],
    timeout: float,
) -> SyncRun:
    deadline = time.monotonic() + timeout
    while True:
        run = await load_run(sessions, run_id)
        if run.status in statuses or time.monotonic() > deadline:
            return run
        await asyncio.sleep(0.05)


async def snapshot(env: Env) -> dict[str, Any]:
    """Everything an import leaves behind, minus times that differ between equal runs."""
    async with env.sessions() as session:
        deals = [
            {
                "id": str(deal.id),
                "source": deal.source,
                "external_id": deal.external_id,
                "owner_user_id": deal.owner_user_id,
                "customer_id": str(deal.customer_id),
                "last_message_id": deal.last_message_id,
                "last_message_key": deal.last_message_key,
                "last_message_at": deal.last_message_at,
                "last_message": deal.last_message,
                "total_messages": deal.total_messages,
                "unread_count": deal.unread_count,
                "listed": deal.synced_at is not None,
                "sync_status": deal.sync_status,
                "version": deal.version,
            }
            for deal in await session.scalars(select(Deal).order_by(Deal.external_id))
        ]
        customers = [
            (c.external_id, c.source, c.name, c.avatar_url)
            for c in await session.scalars(select(Customer).order_by(Customer.external_id))
        ]
        keys = [
            (str(k.deal_id), k.message_id, k.sort_key, k.direction, k.source, k.deleted)
            for k in await session.scalars(
                select(MessageKey).order_by(MessageKey.deal_id, MessageKey.sort_key)
            )
        ]
        retry = list(await session.scalars(select(SyncRetryChat.chat_id)))
    return {
        "deals": deals,
        "customers": customers,
        "keys": keys,
        "retry": sorted(retry),
        "items": await dynamo_items(env.dynamo, env.table),
    }


async def dynamo_items(dynamo: "DynamoDBClient", table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = await dynamo.scan(**kwargs)
        items.extend(from_attributes(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda item: (item["deal_id"], item["sk"]))


@asynccontextmanager
async def connected_broker(url: str) -> AsyncIterator[RabbitBroker]:
    from common.bus import declare_topology, make_broker

    broker = make_broker(url, publish_timeout=5.0)
    await broker.connect()
    await declare_topology(broker, [])
    try:
        yield broker
    finally:
        await broker.stop()


# --- fixtures (imported by the test modules) -------------------------------------------------


@pytest.fixture(scope="session")
async def batch_dynamo(settings: Settings) -> AsyncIterator["DynamoDBClient"]:
    async with dynamodb_client(settings) as client:
        yield client


@pytest.fixture(scope="session")
async def batch_broker(settings: Settings) -> AsyncIterator[RabbitBroker]:
    async with connected_broker(settings.rabbitmq_url.get_secret_value()) as broker:
        yield broker


@pytest.fixture(scope="session")
async def batch_tap(batch_broker: RabbitBroker) -> EventTap:
    tap = EventTap(batch_broker, f"test.batch.events.{uuid.uuid4().hex[:8]}")
    await tap.declare()
    return tap


@pytest.fixture
async def batch_env(
    sessions: async_sessionmaker[AsyncSession],
    batch_dynamo: "DynamoDBClient",
    batch_broker: RabbitBroker,
    batch_tap: EventTap,
    clean_database: None,
) -> Env:
    await batch_tap.drain()
    return Env(sessions, batch_dynamo, await new_table(batch_dynamo), batch_broker, batch_tap)


# --- crash tests: batch workers forked from a warm parent -----------------------------------


def zygote() -> None:
    """Fork `python -m sync_worker.batch` workers on demand, one per JSON env line on stdin,
    printing each child's pid. Importing the worker takes seconds on a busy machine; forking
    a parent that imported everything once takes milliseconds, so crash tests can kill and
    replace real worker processes quickly. Children are reaped by the kernel (SIGCHLD
    ignored), so a test may SIGKILL them by pid."""
    import json
    import os
    import signal
    import sys

    from common.settings import get_settings
    from sync_worker.batch import __main__ as entry

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        env = json.loads(line)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            log = os.open(env.pop("BATCH_WORKER_LOG"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.environ.update(env)
            get_settings.cache_clear()
            try:
                entry.main()
            finally:
                os._exit(0)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
