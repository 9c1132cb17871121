"""The avatar worker as it runs: probes, the bucket, and events through the real broker."""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fast_depends.utils
import httpx
import pytest
from asgi_lifespan import LifespanManager
from faststream.rabbit import RabbitBroker
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import bus
from common.events import MessageReceived, TelegramChat, TelegramMessage, TelegramUser
from common.ids import customer_id_for_telegram
from common.models import Customer
from common.s3 import s3_client
from common.settings import Settings
from common.testing import Infrastructure, settings_for, settled_readiness
from sync_worker.avatar_main import create_app
from sync_worker.outbound.testing import FakeBotApi

JPEG = b"\xff\xd8\xff\xe0" + b"main" * 100


@pytest.fixture
async def worker_settings(infrastructure: Infrastructure, bot: FakeBotApi) -> Settings:
    bucket = f"avatar-main-{uuid.uuid4().hex[:8]}"
    return settings_for(infrastructure, telegram_api_url=bot.url, s3_bucket=bucket)


@pytest.fixture
async def client(
    worker_settings: Settings, clean_database: None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(worker_settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://avatar-worker"
        ) as http,
    ):
        yield http


@pytest.fixture
async def publisher(worker_settings: Settings) -> AsyncIterator[RabbitBroker]:
    broker = bus.make_broker(worker_settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    async with broker:
        await broker.connect()
        yield broker


async def test_probes_answer_and_the_bucket_is_created(
    client: httpx.AsyncClient, worker_settings: Settings
) -> None:
    healthz = await client.get("/healthz")
    readyz = await settled_readiness(client)
    metrics = await client.get("/metrics")

    assert (healthz.status_code, metrics.status_code) == (200, 200)
    assert readyz.status_code == 200, readyz.text
    assert readyz.json() == {"status": "ok"}
    async with s3_client(worker_settings) as s3:
        await s3.head_bucket(Bucket=worker_settings.s3_bucket)


async def test_message_received_on_its_queue_stores_the_customers_avatar(
    client: httpx.AsyncClient,
    worker_settings: Settings,
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
    publisher: RabbitBroker,
) -> None:
    user_id = _customer_with_photo(bot, "M")

    await bus.publish_event(publisher, _message_from(user_id))
    customer = await _wait_for_avatar(sessions, customer_id_for_telegram(user_id))

    key = f"avatars/{customer.id}/M{user_id}.jpg"
    assert customer.avatar_key == key
    async with s3_client(worker_settings) as s3:
        stored = await s3.get_object(Bucket=worker_settings.s3_bucket, Key=key)
        assert await stored["Body"].read() == JPEG


async def test_a_delivery_back_from_a_retry_tier_asks_postgresql_not_what_the_worker_remembers(
    client: httpx.AsyncClient,
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
    publisher: RabbitBroker,
) -> None:
    user_id = _customer_with_photo(bot, "T")
    customer_id = customer_id_for_telegram(user_id)
    event = _message_from(user_id)

    await bus.publish_event(publisher, event)
    await _wait_for_avatar(sessions, customer_id)  # the worker remembers this check as done
    # Meanwhile PostgreSQL has the check due again, as after a claim released elsewhere.
    async with sessions() as session, session.begin():
        await session.execute(
            update(Customer)
            .where(Customer.id == customer_id)
            .values(avatar_checked_at=None, avatar_key=None)
        )
    await publisher.publish(
        bus.encode(event),
        exchange=bus.EVENTS,
        routing_key=event.type,
        headers={bus.ATTEMPT_HEADER: 1},
        persist=True,
    )
    customer = await _wait_for_avatar(sessions, customer_id)

    assert customer.avatar_key == f"avatars/{customer_id}/T{user_id}.jpg"
    assert len(bot.calls_to("getUserProfilePhotos")) == 2


async def test_a_delivery_is_handled_without_a_thread_hop(
    client: httpx.AsyncClient,
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    publisher: RabbitBroker,
) -> None:
    # fast_depends runs a synchronous dependency in a worker thread: 0.5-1 ms of CPU a
    # message (`sync_worker.context`).
    hops: list[str] = []
    run_in_threadpool = fast_depends.utils.run_in_threadpool

    async def recorded(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await run_in_threadpool(func, *args, **kwargs)

    monkeypatch.setattr(fast_depends.utils, "run_in_threadpool", recorded)
    user_id = _customer_with_photo(bot, "H")

    await bus.publish_event(publisher, _message_from(user_id))
    await _wait_for_avatar(sessions, customer_id_for_telegram(user_id))

    assert hops == []


def _customer_with_photo(bot: FakeBotApi, tag: str) -> str:
    """A new Telegram user id whose profile photo has the file_unique_id `<tag><user id>`."""
    user_id = str(uuid.uuid4().int % 10**9 + 10**9)
    bot.set_photo(user_id, bot.add_file(f"{tag}-{user_id}", f"{tag}{user_id}", JPEG))
    return user_id


def _message_from(user_id: str) -> MessageReceived:
    """A customer's message in their private chat (the chat id is their user id)."""
    return MessageReceived(
        owner_user_id="111111111",
        update_id=1,
        business_connection_id="conn-main",
        chat_id=user_id,
        message_id="1",
        message=TelegramMessage(
            message_id=1,
            chat=TelegramChat(id=user_id),
            sender=TelegramUser(id=user_id, first_name="C"),
            date=datetime.now(UTC),
            text="hi",
        ),
    )


async def _wait_for_avatar(
    sessions: async_sessionmaker[AsyncSession], customer_id: uuid.UUID
) -> Customer:
    for _ in range(100):
        async with sessions() as session:
            customer = await session.get(Customer, customer_id)
        if customer is not None and customer.avatar_key is not None:
            return customer
        await asyncio.sleep(0.1)
    raise AssertionError("the avatar was not stored within 10 s")


def _environment(settings: Settings, **extra: str) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POSTGRES_", "TELEGRAM_", "DATABASE_", "DEBUG"))
    }
    environment.update(
        {
            "DATABASE_URL": settings.sqlalchemy_url,
            "RABBITMQ_URL": settings.rabbitmq_url.get_secret_value(),
            "AWS_ENDPOINT_URL_DYNAMODB": settings.aws_endpoint_url_dynamodb or "",
            "AWS_ENDPOINT_URL_S3": settings.aws_endpoint_url_s3 or "",
            "DYNAMODB_MESSAGES_TABLE": settings.dynamodb_messages_table,
            "S3_BUCKET": settings.s3_bucket,
            "TELEGRAM_API_URL": settings.telegram_api_url,
            **extra,
        }
    )
    return environment


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_avatar_worker_process_answers_healthz_and_stops_on_sigterm(
    worker_settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    token = worker_settings.telegram_bot_token.get_secret_value()
    environment = _environment(
        worker_settings, AVATAR_WORKER_PORT=str(port), TELEGRAM_BOT_TOKEN=token
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sync_worker.avatar_main",
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(150):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the avatar worker did not become ready")

        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = (await process.stdout.read()).decode() if process.stdout else ""

    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    assert "Application shutdown complete." in output
    assert token not in output


async def test_production_start_without_a_bot_token_is_refused(
    worker_settings: Settings, tmp_path: Path
) -> None:
    environment = _environment(worker_settings, DEBUG="false", TELEGRAM_BOT_TOKEN="")

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sync_worker.avatar_main"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert result.returncode != 0
    assert b"TELEGRAM_BOT_TOKEN" in result.stderr
