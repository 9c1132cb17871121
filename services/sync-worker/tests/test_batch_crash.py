"""SIGKILL batch workers (real processes) at random moments; the run must end exactly as an
uninterrupted one does: nothing imported twice, nothing skipped, the same counters."""

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from common.models import Base, SyncRun
from common.testing import Infrastructure
from sync_worker.batch import testing
from sync_worker.batch.testing import (
    TOKEN,
    Env,
    Upstream,
    api_for,
    create_run,
    load_run,
    new_table,
    run_once,
    snapshot,
    upstream,
    wait_for_status,
)
from sync_worker.devserver.data import generate

batch_broker = testing.batch_broker
batch_dynamo = testing.batch_dynamo
batch_tap = testing.batch_tap
batch_env = testing.batch_env

KILLS = 3


class Workers:
    """Worker processes forked by the zygote; they are not our children, so they are
    watched and signalled by pid."""

    def __init__(self, zygote: subprocess.Popen[str], env: dict[str, str]) -> None:
        self.zygote, self.env, self.pids = zygote, env, list[int]()

    async def spawn(self) -> int:
        assert self.zygote.stdin is not None
        assert self.zygote.stdout is not None
        self.zygote.stdin.write(json.dumps(self.env) + "\n")
        self.zygote.stdin.flush()
        pid = int(await asyncio.to_thread(self.zygote.stdout.readline))
        self.pids.append(pid)
        return pid

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    async def stop_all(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not any(map(self.alive, self.pids)):
                return
            await asyncio.sleep(0.05)
        for pid in filter(self.alive, self.pids):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def zygote() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", "from sync_worker.batch.testing import zygote; zygote()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    yield process
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.close()
    process.wait(10)
    process.stdout.close()


def _worker_env(
    infrastructure: Infrastructure, table: str, up: Upstream, log: Path
) -> dict[str, str]:
    return {
        "BATCH_WORKER_LOG": str(log),
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": infrastructure.postgres_url,
        "RABBITMQ_URL": infrastructure.rabbitmq_url,
        "AWS_ENDPOINT_URL_DYNAMODB": infrastructure.dynamodb_url,
        "DYNAMODB_MESSAGES_TABLE": table,
        "EXTERNAL_API_URL": up.url,
        "EXTERNAL_API_TOKEN": TOKEN,
        "EXTERNAL_API_BACKOFF": "0.02",
        "SYNC_LEASE_SECONDS": "0.8",
        "SYNC_SCAN_SECONDS": "0.1",
        "SYNC_PENDING_GRACE_SECONDS": "0",
        "SYNC_PAGE_SIZE": "5",
        "SYNC_MESSAGE_PAGE_SIZE": "7",
    }


async def _claimed_after(env: Env, run_id: uuid.UUID, token: int) -> SyncRun:
    """The run once a worker newer than `token` holds it, or once it ended."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = await load_run(env.sessions, run_id)
        if run.fencing_token > token or run.status in ("completed", "failed"):
            return run
        await asyncio.sleep(0.01)
    raise AssertionError("no worker claimed the run")


async def _reset(env: Env, engine: AsyncEngine) -> Env:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    return Env(env.sessions, env.dynamo, await new_table(env.dynamo), env.broker, env.events)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_killed_workers_end_as_an_uninterrupted_run(
    batch_env: Env,
    engine: AsyncEngine,
    infrastructure: Infrastructure,
    zygote: subprocess.Popen[str],
    tmp_path: Path,
    seed: int,
) -> None:
    rng = random.Random(seed)
    dataset = generate(chats=14, max_messages=30, seed=seed)
    with upstream(dataset) as up:
        async with api_for(up) as api:
            baseline = batch_env.runner(api)
            expected_run = await run_once(baseline, await create_run(batch_env.sessions))
            expected = await snapshot(batch_env)
        env = await _reset(batch_env, engine)
        up.chaos.slow_every, up.chaos.slow_seconds = 1, 0.03
        workers = Workers(zygote, _worker_env(infrastructure, env.table, up, tmp_path / "log"))
        run_id = await create_run(env.sessions)
        kills = 0
        try:
            await workers.spawn()
            run = await _claimed_after(env, run_id, 0)
            while run.status == "running" and kills < KILLS:
                await workers.spawn()  # the next one waits for the lease to expire
                await asyncio.sleep(rng.uniform(0.05, 0.6))
                holder = int(str(run.lease_owner).split(":")[1])
                if Workers.alive(holder):
                    os.kill(holder, signal.SIGKILL)
                    kills += 1
                run = await _claimed_after(env, run_id, run.fencing_token)
            run = await wait_for_status(env.sessions, run_id, {"completed", "failed"}, 30)
        finally:
            await workers.stop_all()
    actual = await snapshot(env)

    assert run.status == "completed", (tmp_path / "log").read_text()[-3000:]
    assert (kills, run.fencing_token) == (KILLS, KILLS + 1)
    assert actual == expected
    assert (run.processed_chats, run.imported_messages) == (
        expected_run.processed_chats,
        expected_run.imported_messages,
    )
