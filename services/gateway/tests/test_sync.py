"""Sync control: one active run, its command through the outbox, the status document."""

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from common.bus import make_broker
from common.events import SyncStart
from common.models import Outbox, SyncRetryChat, SyncRun
from common.testing import TEST_JWT_SECRET
from gateway import commands as gateway_commands
from gateway.deps import Resources
from gateway.problems import ProblemError
from gateway.sync import outbox, runs
from gateway.tokens import TokenVerifier

pytestmark = pytest.mark.usefixtures("fresh")


async def test_start_is_accepted_and_its_command_arrives_on_the_commands_exchange(
    client: httpx.AsyncClient, admin: dict[str, str], commands: Any, sessions: Any
) -> None:
    answer = await client.post(
        "/api/v1/sync/start/", json={"max_date": "2025-01-01"}, headers=admin
    )
    published = await commands(1)

    assert answer.status_code == 202
    body = answer.json()
    task_id = body["task_id"]
    assert body["status"] == "pending"
    assert body["status_url"] == f"http://gateway.test/api/v1/sync/status/{task_id}/"
    assert published[0].routing_key == "sync.start"
    command = json.loads(published[0].body)
    assert command["task_id"] == task_id
    assert command["max_date"] == "2025-01-01T00:00:00Z"
    async with sessions() as session:
        run = await session.get(SyncRun, uuid.UUID(task_id))
        unpublished = await session.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.published_at.is_(None))
        )
    assert run is not None
    assert run.status == "pending"
    assert run.max_date == datetime(2025, 1, 1, tzinfo=UTC)
    assert unpublished == 0


async def test_second_start_while_active_is_409_naming_the_active_task(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Any
) -> None:
    first = (await client.post("/api/v1/sync/start", headers=admin)).json()
    async with sessions() as session, session.begin():
        await session.execute(update(SyncRun).values(status="running"))

    second = await client.post("/api/v1/sync/start/", json={}, headers=admin)

    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["task_id"] == first["task_id"]
    assert first["task_id"] in second.json()["detail"]


async def test_concurrent_starts_accept_exactly_one(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    import asyncio

    answers = await asyncio.gather(
        *(client.post("/api/v1/sync/start/", headers=admin) for _ in range(5))
    )

    assert sorted(a.status_code for a in answers) == [202, 409, 409, 409, 409]


async def test_start_after_a_failed_run_resumes_it_with_its_max_date(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Any
) -> None:
    failed = (
        await client.post(
            "/api/v1/sync/start/", json={"max_date": "2025-06-01T12:00:00+02:00"}, headers=admin
        )
    ).json()
    async with sessions() as session, session.begin():
        await session.execute(update(SyncRun).values(status="failed", error="upstream 401"))

    resumed = (await client.post("/api/v1/sync/start/", headers=admin)).json()
    status = (await client.get(resumed["status_url"], headers=admin)).json()

    assert resumed["resumed_from"] == failed["task_id"]
    assert status["resumed_from"] == failed["task_id"]
    assert status["max_date"] == "2025-06-01T10:00:00Z"


@pytest.mark.parametrize(
    "max_date", ["yesterday", "2025-13-01", "2025-01-01T00:00:00", 12, "2025-1-1"]
)
async def test_bad_max_date_is_a_422_problem(
    client: httpx.AsyncClient, admin: dict[str, str], max_date: object
) -> None:
    answer = await client.post("/api/v1/sync/start/", json={"max_date": max_date}, headers=admin)

    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "max_date"


async def test_status_document_has_every_field_of_the_batch_sync_issue(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Any
) -> None:
    started = (await client.post("/api/v1/sync/start/", headers=admin)).json()
    async with sessions() as session, session.begin():
        await session.execute(
            update(SyncRun).values(
                status="running",
                processed_chats=120,
                imported_messages=3400,
                failed_chats=1,
                cursor="c-9",
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
        session.add(SyncRetryChat(chat_id="chat_0042", last_error="500"))

    status = (await client.get(started["status_url"], headers=admin)).json()

    assert status | {"updated_at": None} == {
        "task_id": started["task_id"],
        "status": "running",
        "resumed_from": None,
        "max_date": None,
        "processed_chats": 120,
        "imported_messages": 3400,
        "skipped_chats": 0,
        "failed_chats": 1,
        "retry_chats": ["chat_0042"],
        "cursor": "c-9",
        "started_at": "2026-01-01T00:00:00Z",
        "updated_at": None,
        "finished_at": None,
        "error": None,
    }


@pytest.mark.parametrize("task_id", ["nope", str(uuid.uuid4())])
async def test_unknown_task_status_is_404(
    client: httpx.AsyncClient, admin: dict[str, str], task_id: str
) -> None:
    answer = await client.get(f"/api/v1/sync/status/{task_id}", headers=admin)

    assert answer.status_code == 404


async def test_relay_publishes_a_command_left_unpublished_by_a_crash(
    client: httpx.AsyncClient, commands: Any, sessions: Any
) -> None:
    task_id = uuid.uuid4()
    command = SyncStart(task_id=task_id)
    async with sessions() as session, session.begin():
        # What a gateway killed between commit and publish leaves behind.
        session.add(SyncRun(id=task_id, status="pending"))
        session.add(outbox.row_for(command))

    published = await commands(1, timeout=10)

    assert [json.loads(m.body)["task_id"] for m in published] == [str(task_id)]
    assert published[0].message_id == str(command.event_id)
    assert await _marked_published(sessions, timeout=5)


async def _marked_published(sessions: Any, *, timeout: float) -> bool:
    # The relay commits the mark after the broker confirms, so a consumer can be faster.
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with sessions() as session:
            row = await session.scalar(select(Outbox))
        if row is not None and row.published_at is not None:
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)


async def test_start_with_the_broker_down_still_commits_and_the_relay_delivers_later(
    settings: Any,
    engine: Any,
    sessions: Any,
    commands: Any,
    dynamo_client: Any,
    s3_test_client: Any,
) -> None:
    # This broker never connects, so whatever arrives was published by the app's relay.
    down = make_broker(settings.rabbitmq_url.get_secret_value(), publish_timeout=1)
    tokens = TokenVerifier(TEST_JWT_SECRET, max_hours=24)
    resources = Resources(
        settings, engine, sessions, dynamo_client, s3_test_client, down, tokens, reads=None
    )

    started = await runs.start(resources, None, "900000001")
    published = await commands(1, timeout=10)

    assert isinstance(started, runs.Started)
    assert json.loads(published[0].body)["task_id"] == str(started.task_id)


async def test_command_publish_failure_is_a_503_problem(settings: Any) -> None:
    down = make_broker(settings.rabbitmq_url.get_secret_value(), publish_timeout=1)

    with pytest.raises(ProblemError) as raised:
        await gateway_commands.send(down, SyncStart(task_id=uuid.uuid4()), timeout=1)

    assert raised.value.status == 503
