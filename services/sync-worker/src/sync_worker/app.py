"""Wiring: the broker with its subscribers, the stores, and the probe server around them.

One process serves the live events, the outbound commands (read status, replies) and the
batch sync. The Starlette lifespan owns every resource: the engine, the DynamoDB client (the
table is created if missing), the outbound Bot API client, the batch runner, the broker
(connected, topology declared, then started). uvicorn turns SIGTERM into the lifespan's
shutdown, where the broker stops taking deliveries and waits for the ones in flight to be
committed and acked, and a batch run hands its lease back.
"""

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request

from common import bus, db, dynamo
from common.bus import declare_topology, make_broker, publish_event
from common.health import Check, probe_routes
from common.heap import freeze_startup_objects
from common.settings import Settings
from sync_worker import consumers, outbound
from sync_worker.batch import consumer as batch_consumer
from sync_worker.batch.service import batch_sync
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
    broker.include_router(outbound.router)
    broker.include_router(batch_consumer.router)
    return broker


QUEUES = [*consumers.QUEUES, *outbound.QUEUES, *batch_consumer.QUEUES]


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Worker]]:
        engine = db.make_engine(settings)
        broker = create_broker(settings)
        table = settings.dynamodb_messages_table
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(dynamo.dynamodb_client(settings))
                await dynamo.ensure_messages_table(client, table)
                sessions = db.make_sessionmaker(engine)
                stores = Stores(sessions, client, table)
                publish = partial(publish_event, broker, timeout=settings.publish_confirm_timeout)
                batcher = Batcher(partial(write_items, stores), partial(commit, stores), publish)
                broker.context.set_global("batcher", batcher)
                commands = await stack.enter_async_context(
                    outbound.open_outbound(settings, sessions, client, broker)
                )
                broker.context.set_global("outbound", commands)
                await broker.connect()
                await declare_topology(broker, QUEUES)
                # The runner must be in the broker's context before `sync.start` deliveries.
                await stack.enter_async_context(batch_sync(settings, broker, sessions, client))
                freeze_startup_objects()
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

    return {
        "postgresql": partial(db.ping, worker.engine),
        "rabbitmq": partial(bus.ping, worker.broker),
        "dynamodb": partial(dynamo.ping, worker.dynamo, worker.table),
    }
