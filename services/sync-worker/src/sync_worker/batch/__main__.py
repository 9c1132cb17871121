"""`python -m sync_worker.batch`: a worker that only runs batch syncs (used by the crash tests
and handy alone). Stops on SIGTERM/SIGINT, handing its lease back."""

import asyncio
import signal

from common import db, dynamo
from common.bus import declare_topology, make_broker
from common.logging import configure_logging
from common.settings import get_settings
from sync_worker.batch import consumer
from sync_worker.batch.service import batch_sync


async def serve() -> None:
    settings = get_settings()
    if settings.database_url is None:
        settings.require_secrets("postgres_password")
    settings.require_secrets("external_api_token")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = db.make_engine(settings, pool_size=4)
    broker = make_broker(
        settings.rabbitmq_url.get_secret_value(), publish_timeout=settings.publish_confirm_timeout
    )
    broker.include_router(consumer.router)
    try:
        async with dynamo.dynamodb_client(settings) as client:
            await dynamo.ensure_messages_table(client, settings.dynamodb_messages_table)
            sessions = db.make_sessionmaker(engine)
            await broker.connect()
            await declare_topology(broker, consumer.QUEUES)
            async with batch_sync(settings, broker, sessions, client):
                await broker.start()
                try:
                    await stop.wait()
                finally:
                    await broker.stop()
    finally:
        await engine.dispose()


def main() -> None:
    configure_logging("sync-worker-batch", get_settings().log_level)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
