"""`avatar-worker`: customer avatars and message media copied to S3, with its probe server.

The Starlette lifespan owns every resource: the engine, the DynamoDB and S3 clients (the
bucket is created if missing), the Bot API clients and the broker (connected, topology
declared, then started). uvicorn turns SIGTERM into the lifespan's shutdown, where the broker
stops taking deliveries and lets the ones in flight finish.
"""

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import uvicorn
from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request

from common import bus, db, dynamo, s3
from common.bus import declare_topology, make_broker
from common.health import Check, probe_routes
from common.heap import freeze_startup_objects
from common.logging import configure_logging
from common.settings import Settings, get_settings
from sync_worker import avatars

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client


@dataclass(frozen=True)
class AvatarWorker:
    engine: AsyncEngine
    s3: "S3Client"
    bucket: str
    broker: RabbitBroker


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, AvatarWorker]]:
        engine = db.make_engine(settings, pool_size=5)
        broker = make_broker(
            settings.rabbitmq_url.get_secret_value(),
            publish_timeout=settings.publish_confirm_timeout,
        )
        broker.include_router(avatars.router)
        try:
            async with (
                dynamo.dynamodb_client(settings) as dynamo_client,
                s3.s3_client(settings) as s3_client,
            ):
                await s3.ensure_bucket(s3_client, settings.s3_bucket, settings.aws_region)
                async with avatars.open_avatars(
                    settings, db.make_sessionmaker(engine), dynamo_client, s3_client, broker
                ) as resources:
                    broker.context.set_global("avatars", resources)
                    await broker.connect()
                    await declare_topology(broker, avatars.QUEUES)
                    freeze_startup_objects()
                    await broker.start()
                    try:
                        yield {
                            "worker": AvatarWorker(engine, s3_client, settings.s3_bucket, broker)
                        }
                    finally:
                        await broker.stop()
        finally:
            await engine.dispose()

    return Starlette(routes=probe_routes(_checks), lifespan=lifespan)


def _checks(request: Request) -> Mapping[str, Check]:
    worker: AvatarWorker = request.state.worker

    return {
        "postgresql": partial(db.ping, worker.engine),
        "rabbitmq": partial(bus.ping, worker.broker),
        "s3": partial(s3.ping, worker.s3, worker.bucket),
    }


def main() -> None:
    settings = get_settings()
    configure_logging("avatar-worker", settings.log_level)
    # httpx logs every request line at INFO; Bot API lines would be noise (redacted or not).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings.require_secrets("telegram_bot_token")
    if settings.database_url is None:
        settings.require_secrets("postgres_password")
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.avatar_worker_port,
        log_config=None,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
