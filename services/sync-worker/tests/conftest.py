"""Shared fixtures of the worker's tests: stores, the fake Bot API, a publisher."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import bus
from common.dynamo import dynamodb_client, ensure_messages_table
from common.events import Event
from common.s3 import ensure_bucket, s3_client
from common.settings import Settings
from sync_worker.live import Stores
from sync_worker.outbound.resources import Outbound
from sync_worker.outbound.testing import FakeBotApi, fake_outbound
from sync_worker.testing import new_stores

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client

SAMPLES = Path(__file__).parent / "samples"


def sample_update(name: str) -> dict[str, Any]:
    update: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return update


@pytest.fixture
def samples() -> dict[str, dict[str, Any]]:
    """The Telegram sample updates by file name (copied from the shared samples)."""
    return {path.stem: sample_update(path.stem) for path in sorted(SAMPLES.glob("*.json"))}


@pytest.fixture(scope="session")
async def dynamo(settings: Settings) -> AsyncIterator["DynamoDBClient"]:
    async with dynamodb_client(settings) as client:
        await ensure_messages_table(client, settings.dynamodb_messages_table)
        yield client


@pytest.fixture(scope="session")
async def s3(settings: Settings) -> AsyncIterator["S3Client"]:
    async with s3_client(settings) as client:
        await ensure_bucket(client, settings.s3_bucket, settings.aws_region)
        yield client


@pytest.fixture
async def bot(settings: Settings) -> AsyncIterator[FakeBotApi]:
    fake = FakeBotApi(settings.telegram_bot_token.get_secret_value())
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def stores(
    sessions: async_sessionmaker[AsyncSession], dynamo: "DynamoDBClient", clean_database: None
) -> Stores:
    return await new_stores(sessions, dynamo)


@pytest.fixture
async def outbound(
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    settings: Settings,
    bot: FakeBotApi,
    clean_database: None,
) -> AsyncIterator[tuple[Outbound, list[Event]]]:
    async with fake_outbound(sessions, dynamo, settings.dynamodb_messages_table, bot) as pair:
        yield pair


@pytest.fixture
async def publisher(worker_settings: Settings) -> AsyncIterator[RabbitBroker]:
    """A confirming publisher on the vhost of the module's `worker_settings`."""
    broker = bus.make_broker(worker_settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    await broker.connect()
    yield broker
    await broker.stop()
