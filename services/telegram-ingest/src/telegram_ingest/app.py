"""The ASGI app: the webhook route, probes, and the resources made in `lifespan`."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import structlog
from aiogram import Bot
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from common.health import Check, probe_routes
from common.heap import freeze_startup_objects
from common.settings import Settings
from telegram_ingest import telegram
from telegram_ingest.ingest import Ingest
from telegram_ingest.owners import Owners
from telegram_ingest.polling import poll
from telegram_ingest.publishing import Publisher, connect, declare
from telegram_ingest.webhook import WebhookEndpoint

log = structlog.get_logger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
WEBHOOK_PATHS = frozenset((WEBHOOK_PATH, WEBHOOK_PATH + "/"))


class State(TypedDict):
    ingest: Ingest


def ingest_of(request: Request) -> Ingest:
    ingest: Ingest = request.state.ingest
    return ingest


def _checks(request: Request) -> dict[str, Check]:
    return {"rabbitmq": ingest_of(request).publisher.ready}


@asynccontextmanager
async def open_ingest(
    settings: Settings, *, bot: Bot | None = None, connect_wait_seconds: float = 30.0
) -> AsyncIterator[Ingest]:
    """Broker connected and topology declared, the Bot and the Dispatcher: one `Ingest`."""
    broker = await connect(
        settings.rabbitmq_url.get_secret_value(),
        publish_timeout=settings.publish_confirm_timeout,
        wait_seconds=connect_wait_seconds,
    )
    bot = bot or telegram.make_bot(settings)
    try:
        await declare(broker)
        yield Ingest(
            bot=bot,
            owners=Owners(bot),
            publisher=await Publisher.open(broker, timeout=settings.publish_confirm_timeout),
        )
    finally:
        await broker.stop()
        await bot.session.close()


def build_app(settings: Settings, *, polling: bool = False) -> ASGIApp:
    """The webhook app; with `polling`, getUpdates in the background and only the probes."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[State]:
        async with open_ingest(settings) as ingest:
            freeze_startup_objects()
            if polling:
                async with polling_in_background(ingest):
                    yield {"ingest": ingest}
                return
            if settings.telegram_webhook_url:
                try:
                    await telegram.set_webhook(ingest.bot, settings)
                except Exception as error:
                    # Telegram keeps the previous registration; `telegram-ingest set-webhook`
                    # retries by hand. Not a reason to refuse updates.
                    log.error("setWebhook failed", error=f"{type(error).__name__}: {error}")
            yield {"ingest": ingest}

    probes = Starlette(routes=probe_routes(_checks), lifespan=lifespan)
    if polling:
        return probes
    secret = settings.telegram_webhook_secret.get_secret_value()
    if not secret:
        log.warning("TELEGRAM_WEBHOOK_SECRET is not set: every webhook request gets 401")
    webhook = WebhookEndpoint(secret)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # With and without the trailing slash, no redirect.
        if scope["type"] == "http" and scope["path"] in WEBHOOK_PATHS:
            await webhook(scope, receive, send)
        else:
            await probes(scope, receive, send)

    return app


@asynccontextmanager
async def polling_in_background(ingest: Ingest) -> AsyncIterator[None]:
    """Poll while the app runs; on shutdown, stop and let the update in hand finish."""
    stop = asyncio.Event()
    task = asyncio.create_task(poll(ingest, stop))
    log.info("polling getUpdates")
    try:
        yield
    finally:
        stop.set()
        offset = await task
        log.info("polling stopped", offset=offset)
