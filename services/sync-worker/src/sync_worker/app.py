"""Wiring: the broker with its subscribers, the stores, and the probe server around them.

The Starlette lifespan owns every resource: the engine, the DynamoDB client (the table is
created if missing), the broker (connected, topology declared, then started). uvicorn turns
SIGTERM into the lifespan's shutdown, where the broker stops taking deliveries and waits for
the ones in flight to be committed and acked.
"""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request

from common import db, dynamo
from common.bus import declare_topology, make_broker, publish_event
from common.health import Check, probe_routes
from common.settings import Settings
from sync_worker import consumers
from sync_worker.batching import Batcher
from sync_worker.live import Stores, commit, write_items

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


@dataclass(frozen=True)
class Worker:
    engine: AsyncEngine
    dynamo: "DynamoDBClient"
    broker: RabbitBroker
    table: str


def create_broker(settings: Settings) -> RabbitBroker:
    broker = make_broker(
        settings.rabbitmq_url.get_secret_value(), publish_timeout=settings.publish_confirm_timeout
    )
    broker.include_router(consumers.create_router())
    return broker


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Worker]]:
        engine = db.make_engine(settings)
        broker = create_broker(settings)
        table = settings.dynamodb_messages_table
        try:
            async with dynamo.dynamodb_client(settings) as client:
                await dynamo.ensure_messages_table(client, table)
                stores = Stores(db.make_sessionmaker(engine), client, table)
                publish = partial(publish_event, broker, timeout=settings.publish_confirm_timeout)
                batcher = Batcher(partial(write_items, stores), partial(commit, stores), publish)
                broker.context.set_global("batcher", batcher)
                await broker.connect()
                await declare_topology(broker, consumers.QUEUES)
                await broker.start()
                try:
                    yield {"worker": Worker(engine, client, broker, table)}
                finally:
                    await broker.stop()
        finally:
            await engine.dispose()

    return Starlette(routes=probe_routes(_checks), lifespan=lifespan)


def _checks(request: Request) -> Mapping[str, Check]:
    worker: Worker = request.state.worker

    async def rabbitmq() -> None:
        if not await worker.broker.ping(timeout=1.0):
            raise ConnectionError("broker not connected")

    return {
        "postgresql": partial(db.ping, worker.engine),
        "rabbitmq": rabbitmq,
        "dynamodb": partial(dynamo.ping, worker.dynamo, worker.table),
    }
