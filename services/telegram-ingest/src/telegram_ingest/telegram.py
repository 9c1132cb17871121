"""The Bot API side: the Bot pointed at TELEGRAM_API_URL, webhook management, raw getUpdates."""

from typing import Any

import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods.base import TelegramMethod

from common.settings import Settings
from telegram_ingest.ingest import BUSINESS_UPDATES

log = structlog.get_logger(__name__)

# A syntactically valid token for development without one: every call fails with 401/404,
# which the webhook answers as 503 for unknown connections.
_PLACEHOLDER_TOKEN = "1:telegram-bot-token-not-configured"  # noqa: S105


def make_bot(settings: Settings) -> Bot:
    token = settings.telegram_bot_token.get_secret_value()
    if not token:
        log.warning("TELEGRAM_BOT_TOKEN is not set: Bot API calls will fail")
        token = _PLACEHOLDER_TOKEN
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(token, session=session)


class GetRawUpdates(TelegramMethod[list[dict[str, Any]]]):
    """`getUpdates` returning plain dicts, so one unparseable update cannot fail the batch."""

    __returning__ = list[dict[str, Any]]
    __api_method__ = "getUpdates"

    offset: int | None = None
    limit: int | None = None
    timeout: int | None = None
    allowed_updates: list[str] | None = None


async def set_webhook(bot: Bot, settings: Settings) -> None:
    if not settings.telegram_webhook_url:
        raise ValueError("TELEGRAM_WEBHOOK_URL is not set")
    # allowed_updates is sticky at Telegram's side: always send it explicitly.
    await bot.set_webhook(
        settings.telegram_webhook_url,
        secret_token=settings.telegram_webhook_secret.get_secret_value(),
        allowed_updates=list(BUSINESS_UPDATES),
        max_connections=settings.telegram_webhook_max_connections,
    )
    log.info(
        "webhook set",
        url=settings.telegram_webhook_url,
        allowed_updates=list(BUSINESS_UPDATES),
        max_connections=settings.telegram_webhook_max_connections,
    )


async def delete_webhook(bot: Bot) -> None:
    await bot.delete_webhook(drop_pending_updates=False)


async def webhook_info(bot: Bot) -> dict[str, Any]:
    info = await bot.get_webhook_info()
    return {
        "url": info.url,
        "pending_update_count": info.pending_update_count,
        "last_error_date": info.last_error_date.isoformat() if info.last_error_date else None,
        "last_error_message": info.last_error_message,
        "allowed_updates": info.allowed_updates,
        "max_connections": info.max_connections,
    }
