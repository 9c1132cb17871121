"""The worker process killed with SIGKILL mid-stream, then restarted: nothing is lost and the
counters equal what the DynamoDB items say."""

import asyncio
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.rabbit import RabbitBroker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import bus
from common.events import (
    MessageEdited,
    MessageReceived,
    MessagesDeleted,
    TelegramChat,
    TelegramMessage,
    TelegramUser,
)
from common.ids import deal_id_for_telegram, telegram_message_key
from common.models import MessageKey
from common.settings import Settings
from common.testing import Infrastructure, settings_for
from sync_worker import consumers
from sync_worker.live import Stores
from sync_worker.store import LiveEvent
from sync_worker.testing import (
    counted_from_items,
    deal_of,
    items_of,
    keys_of,
    purge_queues,
    worker_env,
)

pytestmark = pytest.mark.slow

OWNER = "111111111"
CONNECTION = "conn-crash"
CHATS = (3001, 3002, 3003, 3004)
BASE = datetime(2026, 2, 1, tzinfo=UTC)


def _message(chat_id: int, message_id: int, edit: int = 0) -> TelegramMessage:
    outgoing = message_id % 5 == 0
    return TelegramMessage(
        message_id=message_id,
        chat=TelegramChat(id=chat_id, first_name=f"Customer {chat_id}"),
        sender=TelegramUser(id=OWNER if outgoing else chat_id, first_name="x"),
        date=BASE + timedelta(seconds=message_id),
        edit_date=BASE + timedelta(seconds=message_id, milliseconds=0) + timedelta(hours=edit)
        if edit
        else None,
        text=f"{chat_id}/{message_id} v{edit}",
    )


def stream(messages_per_chat: int) -> tuple[list[LiveEvent], dict[int, int]]:
    """Messages, some edits and some deletes per chat; and each chat's expected total."""
    events: list[LiveEvent] = []
    totals: dict[int, int] = {}
    for chat_id in CHATS:
        common: dict[str, Any] = {
            "owner_user_id": OWNER,
            "update_id": 0,
            "business_connection_id": CONNECTION,
            "chat_id": chat_id,
        }
        for message_id in range(1, messages_per_chat + 1):
            events.append(
                MessageReceived(
                    **common, message_id=message_id, message=_message(chat_id, message_id)
                )
            )
            if message_id % 7 == 0:
                events.append(
                    MessageEdited(
                        **common, message_id=message_id, message=_message(chat_id, message_id, 1)
                    )
                )
        gone = [m for m in range(1, messages_per_chat + 1) if m % 10 == 3]
        events.append(
            MessagesDeleted(
                **common, chat=TelegramChat(id=chat_id), message_ids=gone, occurred_at=BASE
            )
        )
        totals[chat_id] = messages_per_chat - len(gone)
    return events, totals


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    def __init__(self, settings: Settings, cwd: Path) -> None:
        self.settings = settings
        self.cwd = cwd
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, *args: str, extra: dict[str, str] | None = None) -> None:
        command = [sys.executable, *(args or ("-m", "sync_worker"))]
        with (self.cwd / f"worker-{uuid.uuid4().hex[:6]}.log").open("wb") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220
                command,
                cwd=self.cwd,
                env=worker_env(self.settings, SYNC_WORKER_PORT=str(self.port), **(extra or {})),
                stdout=log,
                stderr=log,
            )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as client:
            for _ in range(300):
                if self.process.poll() is not None:
                    raise RuntimeError(f"worker exited with {self.process.returncode}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("worker did not become ready")

    async def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        for _ in range(int(timeout / 0.05)):
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        raise AssertionError("worker did not exit")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
async def crash_settings(infrastructure: Infrastructure, clean_database: None) -> Settings:
    return settings_for(infrastructure, dynamodb_messages_table=f"c_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def process(crash_settings: Settings, tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    await purge_queues(crash_settings.rabbitmq_url.get_secret_value(), consumers.QUEUES)
    worker = WorkerProcess(crash_settings, tmp_path)
    yield worker
    worker.kill()


@pytest.fixture
async def publisher(crash_settings: Settings) -> AsyncIterator[RabbitBroker]:
    broker = bus.make_broker(crash_settings.rabbitmq_url.get_secret_value(), publish_timeout=10)
    await broker.connect()
    yield broker
    await broker.stop()


@pytest.fixture
def stores(
    crash_settings: Settings, sessions: async_sessionmaker[AsyncSession], dynamo: Any
) -> Stores:
    return Stores(sessions, dynamo, crash_settings.dynamodb_messages_table)


async def _publish_all(publisher: RabbitBroker, events: list[LiveEvent]) -> None:
    # ~100 confirms in flight at a time
    for start in range(0, len(events), 100):
        await asyncio.gather(
            *(bus.publish_event(publisher, event) for event in events[start : start + 100])
        )


async def _stored_keys(stores: Stores) -> int:
    """Message keys of this test's chats (other tests' events may share the vhost's queues)."""
    deals = [deal_id_for_telegram(CONNECTION, chat_id) for chat_id in CHATS]
    async with stores.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(MessageKey).where(MessageKey.deal_id.in_(deals))
        )
        return int(count or 0)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def _assert_complete(stores: Stores, totals: dict[int, int], per_chat: int) -> None:
    async def complete() -> bool:
        for chat_id, total in totals.items():
            deal = await deal_of(stores, deal_id_for_telegram(CONNECTION, chat_id))
            if deal is None or deal.total_messages != total:
                return False
        return await _stored_keys(stores) == per_chat * len(totals)

    await eventually(complete)
    for chat_id, total in totals.items():
        deal_id = deal_id_for_telegram(CONNECTION, chat_id)
        deal = await deal_of(stores, deal_id)
        items = await items_of(stores, deal_id)
        assert deal is not None
        assert counted_from_items(items, deal.read_horizon_key) == (
            deal.total_messages,
            deal.unread_count,
        )
        assert deal.total_messages == total
        assert deal.synced_at is not None
        assert len(await keys_of(stores, deal_id)) == per_chat
        edited = {item["sk"]: item["text"] for item in items}[telegram_message_key(14)]
        assert edited == f"{chat_id}/14 v1"


async def test_worker_killed_mid_stream_loses_nothing(
    process: WorkerProcess, publisher: RabbitBroker, stores: Stores
) -> None:
    per_chat = 100
    events, totals = stream(per_chat)
    import time

    t0 = time.monotonic()
    await process.start()
    print("start", time.monotonic() - t0)
    await _publish_all(publisher, events)
    print("published", time.monotonic() - t0)
    await eventually(lambda: _positive(_stored_keys(stores)), timeout=30)
    process.kill()
    at_kill = await _stored_keys(stores)

    import time

    t0 = time.monotonic()
    await process.start()

    await _assert_complete(stores, totals, per_chat)
    print("restart to complete", time.monotonic() - t0, "at kill", at_kill)
    assert 0 < at_kill < per_chat * len(CHATS)
    assert process.terminate() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal


async def test_kill_between_the_dynamodb_write_and_the_commit_is_repaired(
    process: WorkerProcess, publisher: RabbitBroker, stores: Stores
) -> None:
    per_chat = 20
    events, totals = stream(per_chat)
    crash_key = telegram_message_key(17)
    script = str(Path(__file__).parent / "crashing_worker.py")
    await process.start(script, extra={"CRASH_MESSAGE_ID": "17"})
    await _publish_all(publisher, events)
    assert await process.wait_exit() == -signal.SIGKILL
    deal_id = deal_id_for_telegram(CONNECTION, CHATS[0])
    written = {item["sk"] for item in await items_of(stores, deal_id)}
    committed = {key.message_id for key in await keys_of(stores, deal_id)}

    await process.start()

    await _assert_complete(stores, totals, per_chat)
    assert crash_key in written
    assert "17" not in committed


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0
