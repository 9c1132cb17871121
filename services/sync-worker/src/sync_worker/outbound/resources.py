"""What the outbound handlers work with, created once in the worker's lifespan.

Wiring (in the service's lifespan, broker connected):

    async with open_outbound(settings, sessions, dynamo, broker) as outbound:
        broker.context.set_global("outbound", outbound)
        broker.include_router(sync_worker.outbound.router)   # before broker.start()
        await declare_topology(broker, [..., *sync_worker.outbound.QUEUES])
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import httpx
from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.bus import publish_event
from common.events import Event
from common.settings import Settings
from sync_worker.outbound.botapi import BotApi, RetryPolicy
from sync_worker.outbound.limits import Pace

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

Publish = Callable[[Event], Awaitable[None]]

# Telegram answers within seconds; a send stuck longer is better reported than waited for.
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@dataclass(frozen=True)
class Outbound:
    sessions: async_sessionmaker[AsyncSession]
    dynamo: "DynamoDBClient"
    table: str
    bot: BotApi
    publish: Publish
    # Each outbound queue has one active consumer and half of the bot's budget.
    send_pace: Pace
    read_pace: Pace


def paces(settings: Settings) -> tuple[Pace, Pace]:
    share = settings.telegram_bot_rate_per_second / 2
    chat = settings.telegram_chat_rate_per_second
    return Pace(chat_rate=chat, bot_rate=share), Pace(chat_rate=chat, bot_rate=share)


@asynccontextmanager
async def open_outbound(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    broker: RabbitBroker,
    *,
    policy: RetryPolicy | None = None,
) -> AsyncIterator[Outbound]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        bot = BotApi(
            http,
            base_url=settings.telegram_api_url,
            token=settings.telegram_bot_token.get_secret_value(),
            policy=policy,
        )
        send_pace, read_pace = paces(settings)
        yield Outbound(
            sessions=sessions,
            dynamo=dynamo,
            table=settings.dynamodb_messages_table,
            bot=bot,
            publish=partial(publish_event, broker, timeout=settings.publish_confirm_timeout),
            send_pace=send_pace,
            read_pace=read_pace,
        )
