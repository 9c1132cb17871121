"""Test support (imported by tests only): avatar resources pointed at the fake Bot API."""

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import Event
from sync_worker.avatars.resources import Avatars
from sync_worker.outbound.botapi import BotApi
from sync_worker.outbound.limits import Pace
from sync_worker.outbound.testing import FAST_RETRIES, FakeBotApi

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client


@asynccontextmanager
async def fake_avatars(
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    table: str,
    s3: "S3Client",
    bucket: str,
    bot: FakeBotApi,
    *,
    allowlist: Collection[str] = (),
    refresh: timedelta = timedelta(hours=24),
    url_timeout: float = 5.0,
) -> AsyncIterator[tuple[Avatars, list[Event]]]:
    """Published events land in the list."""
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    async with (
        httpx.AsyncClient(timeout=10) as telegram_http,
        httpx.AsyncClient(timeout=5, trust_env=False) as external_http,
    ):
        yield (
            Avatars(
                sessions=sessions,
                dynamo=dynamo,
                table=table,
                s3=s3,
                bucket=bucket,
                bot=BotApi(telegram_http, base_url=bot.url, token=bot.token, policy=FAST_RETRIES),
                pace=Pace(chat_rate=1000.0, bot_rate=1000.0),
                http=external_http,
                publish=publish,
                refresh=refresh,
                allowlist=frozenset(allowlist),
                url_timeout=url_timeout,
            ),
            published,
        )
