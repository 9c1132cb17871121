"""What the avatar worker's handlers work with, created once in its lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

import httpx
from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.bus import publish_event
from common.settings import Settings
from sync_worker.avatars.settled import SettledChecks
from sync_worker.outbound.botapi import BotApi, RetryPolicy
from sync_worker.outbound.limits import Pace
from sync_worker.outbound.resources import Publish

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client

# Files come from Telegram's file server, which may be slow for a 20 MB video.
_TELEGRAM_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
_EXTERNAL_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class Avatars:
    sessions: async_sessionmaker[AsyncSession]
    dynamo: "DynamoDBClient"
    table: str
    s3: "S3Client"
    bucket: str
    bot: BotApi
    pace: Pace
    http: httpx.AsyncClient  # for external avatar URLs: no proxies from the environment
    publish: Publish
    refresh: timedelta
    allowlist: frozenset[str]
    url_timeout: float = 10.0
    max_avatar_bytes: int = 5 * 1024 * 1024
    settled: SettledChecks = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settled", SettledChecks(self.refresh))


@asynccontextmanager
async def open_avatars(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    s3: "S3Client",
    broker: RabbitBroker,
    *,
    policy: RetryPolicy | None = None,
) -> AsyncIterator[Avatars]:
    async with (
        httpx.AsyncClient(timeout=_TELEGRAM_TIMEOUT) as telegram_http,
        httpx.AsyncClient(timeout=_EXTERNAL_TIMEOUT, trust_env=False) as external_http,
    ):
        yield Avatars(
            sessions=sessions,
            dynamo=dynamo,
            table=settings.dynamodb_messages_table,
            s3=s3,
            bucket=settings.s3_bucket,
            bot=BotApi(
                telegram_http,
                base_url=settings.telegram_api_url,
                token=settings.telegram_bot_token.get_secret_value(),
                policy=policy,
            ),
            # Not message sends: their own pace, well inside the bot's budget.
            pace=Pace(
                chat_rate=settings.telegram_bot_rate_per_second,
                bot_rate=settings.telegram_bot_rate_per_second,
            ),
            http=external_http,
            publish=partial(publish_event, broker, timeout=settings.publish_confirm_timeout),
            refresh=timedelta(hours=settings.avatar_refresh_hours),
            allowlist=frozenset(settings.avatar_url_allowlist),
        )
