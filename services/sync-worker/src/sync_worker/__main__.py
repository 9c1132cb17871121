"""`sync-worker` runs the worker; `sync-worker requeue-dead [queue ...]` moves parked
deliveries back to their queues."""

import argparse
import asyncio
import sys

import uvicorn

from common.bus import CATALOGUE_CONSUMERS
from common.logging import configure_logging
from common.settings import InsecureSettingsError, get_settings
from sync_worker import consumers
from sync_worker.app import create_app
from sync_worker.requeue import requeue_dead


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sync-worker")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="consume events (the default)")
    requeue = commands.add_parser("requeue-dead", help="move parked messages back")
    requeue.add_argument("queues", nargs="*", help="default: every catalogue queue")
    arguments = parser.parse_args(argv)

    settings = get_settings()
    configure_logging("sync-worker", settings.log_level)
    if arguments.command == "requeue-dead":
        queues = arguments.queues or sorted(
            {c.queue_name for c in CATALOGUE_CONSUMERS} | set(consumers.QUEUES)
        )
        moved = asyncio.run(requeue_dead(settings.rabbitmq_url.get_secret_value(), queues))
        for queue, count in moved.items():
            sys.stdout.write(f"{queue}: {count} requeued\n")
        return
    try:
        # Replies and read receipts need the bot; the batch sync needs the upstream's token.
        secrets = ["telegram_bot_token", "external_api_token"]
        if settings.database_url is None:
            secrets.append("postgres_password")
        settings.require_secrets(*secrets)
    except InsecureSettingsError as error:
        sys.exit(f"sync-worker: {error}")
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.sync_worker_port,
        log_config=None,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
