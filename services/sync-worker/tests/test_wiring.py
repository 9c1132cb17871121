"""The worker process serves the commands too: replies, read status and batch sync."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from asgi_lifespan import LifespanManager
from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import bus
from common.events import MessageSend, MessageSendFailed, SyncStart, event_adapter
from common.models import SyncRun
from common.settings import Settings
from common.testing import Infrastructure, settings_for
from sync_worker.app import QUEUES, create_app
from sync_worker.testing import purge_queues


@pytest.fixture
async def worker_settings(infrastructure: Infrastructure, clean_database: None) -> Settings:
    # No external API answers here: a claimed run fails fast instead of waiting.
    return settings_for(
        infrastructure,
        dynamodb_messages_table=f"wire_{uuid.uuid4().hex[:12]}",
        external_api_url="http://127.0.0.1:9",
        external_api_attempts=1,
    )


@pytest.fixture
async def running_worker(worker_settings: Settings) -> AsyncIterator[None]:
    await purge_queues(worker_settings.rabbitmq_url.get_secret_value(), QUEUES)
    async with LifespanManager(create_app(worker_settings)):
        yield


async def test_reply_command_is_consumed_by_the_worker(
    worker_settings: Settings, running_worker: None, publisher: RabbitBroker
) -> None:
    connection = await aio_pika.connect(worker_settings.rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(await channel.get_exchange(bus.EVENTS.name), "message.send_failed")
        command = MessageSend(deal_id=uuid.uuid4(), client_request_id="wire-1", text="hello")

        await bus.publish_command(publisher, command)
        failed = None
        async with asyncio.timeout(20):
            while failed is None:
                message = await tap.get(fail=False, no_ack=True)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                event = event_adapter.validate_json(message.body)
                if isinstance(event, MessageSendFailed) and event.deal_id == command.deal_id:
                    failed = event

    assert failed.reason == "deal_not_found"


async def test_sync_start_command_is_claimed_by_the_worker(
    running_worker: None,
    publisher: RabbitBroker,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    task_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(SyncRun(id=task_id, status="pending"))

    await bus.publish_command(publisher, SyncStart(task_id=task_id))
    status = "pending"
    async with asyncio.timeout(30):
        while status == "pending":
            await asyncio.sleep(0.1)
            async with sessions() as session:
                run = await session.get(SyncRun, task_id, populate_existing=True)
                assert run is not None
                status = run.status

    assert status in {"running", "failed"}
