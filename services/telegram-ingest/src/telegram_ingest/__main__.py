"""`telegram-ingest [serve|set-webhook|delete-webhook|webhook-info|poll]` (serve by default).

`poll` runs the same process without a webhook: getUpdates in the background, probes on the
same port, SIGTERM handled by uvicorn like `serve`.
"""

import argparse
import asyncio
import json
import sys

import structlog
import uvicorn

from common.logging import configure_logging
from common.settings import InsecureSettingsError, Settings, get_settings
from telegram_ingest import telegram
from telegram_ingest.app import build_app

log = structlog.get_logger(__name__)

COMMANDS = ("serve", "set-webhook", "delete-webhook", "webhook-info", "poll")


def _serve(settings: Settings, *, polling: bool) -> None:
    settings.require_secrets(
        "telegram_bot_token", *(() if polling else ("telegram_webhook_secret",))
    )
    config = uvicorn.Config(
        build_app(settings, polling=polling),
        host=settings.bind_host,
        port=settings.telegram_ingest_port,
        log_config=None,
        lifespan="on",
        # A line per update costs a large share of throughput; rejections are in /metrics.
        access_log=settings.debug,
        # Nothing here reads the client's address; skip rewriting it from proxy headers.
        proxy_headers=False,
        # Uvicorn stops accepting on SIGTERM and lets requests in flight finish their confirm.
        timeout_graceful_shutdown=15,
    )
    uvicorn.Server(config).run()


async def run_admin(settings: Settings, command: str) -> None:
    """`set-webhook`, `delete-webhook` or `webhook-info` (printed as JSON)."""
    settings.require_secrets("telegram_bot_token")
    bot = telegram.make_bot(settings)
    try:
        if command == "set-webhook":
            settings.require_secrets("telegram_webhook_secret")
            await telegram.set_webhook(bot, settings)
        elif command == "delete-webhook":
            await telegram.delete_webhook(bot)
        # What Telegram now holds, whichever command ran.
        print(json.dumps(await telegram.webhook_info(bot), indent=2))
    finally:
        await bot.session.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="telegram-ingest", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=COMMANDS)
    command = parser.parse_args(argv).command
    settings = get_settings()
    configure_logging("telegram-ingest", settings.log_level)
    try:
        if command in ("serve", "poll"):
            _serve(settings, polling=command == "poll")
        else:
            asyncio.run(run_admin(settings, command))
    except InsecureSettingsError as error:
        log.error(str(error))
        sys.exit(2)


if __name__ == "__main__":
    main()
