"""Fixtures: the app against real RabbitMQ, a fake Bot API server, a queue that sees events."""

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from asgi_lifespan import LifespanManager

sys.path.insert(0, str(Path(__file__).parent))

from ingest_fakes import SECRET, Events, FakeBotAPI, StartApp

from common import bus
from common.settings import Settings
from common.testing import Infrastructure, settings_for
from telegram_ingest.app import build_app


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotAPI]:
    fake = FakeBotAPI()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def app_settings(infrastructure: Infrastructure, bot_api: FakeBotAPI) -> Settings:
    return settings_for(
        infrastructure,
        telegram_api_url=bot_api.url,
        telegram_webhook_secret=SECRET,
        publish_confirm_timeout=2.0,
    )


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, and a client that sends the right secret by default."""
    app = build_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://ingest",
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        ) as client,
    ):
        yield client


@pytest.fixture
def start_app() -> StartApp:
    return running


@pytest.fixture
async def client(app_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(app_settings) as client:
        yield client


@contextlib.asynccontextmanager
async def reading_events(settings: Settings) -> AsyncIterator[Events]:
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            bus.EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(f"test-{uuid.uuid4().hex}", exclusive=True)
        await queue.bind(exchange, routing_key="telegram.#")
        yield Events(queue)


@pytest.fixture
async def events(app_settings: Settings) -> AsyncIterator[Events]:
    async with reading_events(app_settings) as events:
        yield events
