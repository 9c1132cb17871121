import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, update

from common.bus import declare_topology, make_broker, publish_command
from common.events import SyncStart
from common.models import SyncRun
from common.settings import Settings
from sync_worker.batch import consumer, lease, testing
from sync_worker.batch.lease import LeaseLost
from sync_worker.batch.run import execute
from sync_worker.batch.runner import RunnerConfig
from sync_worker.batch.service import batch_sync
from sync_worker.batch.testing import (
    Env,
    api_for,
    create_run,
    load_run,
    snapshot,
    upstream,
    wait_for_status,
)
from sync_worker.devserver.data import generate

batch_broker = testing.batch_broker
batch_dynamo = testing.batch_dynamo
batch_tap = testing.batch_tap
batch_env = testing.batch_env


async def test_two_workers_racing_for_a_run_run_it_once(batch_env: Env) -> None:
    dataset = generate(chats=6, max_messages=6, seed=3)
    with upstream(dataset) as up:
        async with api_for(up) as api:
            one, two = batch_env.runner(api, owner="one"), batch_env.runner(api, owner="two")
            run_id = await create_run(batch_env.sessions)

            claims = await asyncio.gather(
                one.start(run_id), two.start(run_id), one.scan(), two.scan()
            )
            await asyncio.gather(one.wait(), two.wait())
    run = await load_run(batch_env.sessions, run_id)
    state = await snapshot(batch_env)

    assert sorted(claims) == [False, False, False, True]
    assert (run.status, run.fencing_token) == ("completed", 1)
    assert (
        run.imported_messages == len(state["items"]) == sum(len(c.messages) for c in dataset.chats)
    )


async def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(batch_env: Env) -> None:
    dataset = generate(chats=4, max_messages=5, seed=1)
    with upstream(dataset) as up:
        async with api_for(up) as api:
            runner = batch_env.runner(api, owner="survivor")
            run_id = await create_run(batch_env.sessions)
            # A worker claims the run and dies at once: it never renews its lease.
            dead = await lease.claim(batch_env.sessions, run_id, "dead", 0.5)
            assert dead is not None
            too_early = await runner.scan()
            await asyncio.sleep(0.6)

            taken = await runner.scan()
            await runner.wait()
            with pytest.raises(LeaseLost):
                await execute(runner.deps, dead)
    run = await load_run(batch_env.sessions, run_id)

    assert (too_early, taken) == (False, True)
    assert (run.status, run.fencing_token, run.processed_chats) == ("completed", 2, 4)
    assert not await lease.renew(batch_env.sessions, dead)


async def test_stopped_worker_hands_its_lease_over_at_once(batch_env: Env) -> None:
    dataset = generate(chats=6, max_messages=20, seed=2)
    with upstream(dataset) as up:
        up.chaos.slow_every, up.chaos.slow_seconds = 1, 0.05
        async with api_for(up) as api:
            config = RunnerConfig(lease_seconds=60, scan_seconds=0.1, pending_grace_seconds=0)
            first = batch_env.runner(api, owner="first", config=config)
            second = batch_env.runner(api, owner="second", config=config)
            run_id = await create_run(batch_env.sessions)
            assert await first.start(run_id)
            await asyncio.sleep(0.5)

            await first.stop()
            handed_over = await load_run(batch_env.sessions, run_id)
            taken = await second.scan()
            await second.wait()
    run = await load_run(batch_env.sessions, run_id)
    state = await snapshot(batch_env)

    assert handed_over.status == "running"
    assert handed_over.processed_chats < 6
    assert taken
    assert (run.status, run.fencing_token) == ("completed", 2)
    assert {d["external_id"]: d["total_messages"] for d in state["deals"]} == {
        c.id: len(c.messages) for c in dataset.chats
    }
    assert run.imported_messages == len(state["items"])


async def test_pending_run_whose_command_was_lost_is_picked_up(batch_env: Env) -> None:
    with upstream(generate(chats=2)) as up:
        async with api_for(up) as api:
            patient = batch_env.runner(api, config=RunnerConfig(pending_grace_seconds=60))
            eager = batch_env.runner(api, config=RunnerConfig(pending_grace_seconds=0))
            run_id = await create_run(batch_env.sessions)

            left_to_its_command = await patient.scan()
            picked = await eager.scan()
            await eager.wait()
    run = await load_run(batch_env.sessions, run_id)

    assert (left_to_its_command, picked) == (False, True)
    assert run.status == "completed"


async def test_sync_start_command_through_rabbitmq_runs_the_sync(
    batch_env: Env, settings: Settings
) -> None:
    dataset = generate(chats=3, max_messages=4, seed=4)
    worker_settings = settings.model_copy(update={"dynamodb_messages_table": batch_env.table})
    broker = make_broker(settings.rabbitmq_url.get_secret_value(), publish_timeout=5.0)
    broker.include_router(consumer.router)
    config = RunnerConfig(lease_seconds=5, scan_seconds=30, pending_grace_seconds=60)
    with upstream(dataset) as up:
        async with api_for(up) as api:
            await broker.connect()
            await declare_topology(broker, consumer.QUEUES)
            async with batch_sync(
                worker_settings,
                broker,
                batch_env.sessions,
                batch_env.dynamo,
                config=config,
                api=api,
            ):
                await broker.start()
                run_id = await create_run(batch_env.sessions)

                await publish_command(batch_env.broker, SyncStart(task_id=run_id))
                run = await wait_for_status(batch_env.sessions, run_id, {"completed", "failed"}, 20)
            await broker.stop()
    state = await snapshot(batch_env)

    assert (run.status, run.processed_chats) == ("completed", 3)
    assert len(state["items"]) == sum(len(c.messages) for c in dataset.chats)


async def test_holder_that_lost_its_lease_stops_without_writing(batch_env: Env) -> None:
    dataset = generate(chats=8, max_messages=20, seed=5)
    with upstream(dataset) as up:
        up.chaos.slow_every, up.chaos.slow_seconds = 1, 0.03
        async with api_for(up) as api:
            config = RunnerConfig(lease_seconds=0.6, scan_seconds=0.1, pending_grace_seconds=0)
            paused = batch_env.runner(api, owner="paused", config=config)
            other = batch_env.runner(api, owner="other", config=config)
            run_id = await create_run(batch_env.sessions)
            assert await paused.start(run_id)
            await asyncio.sleep(0.3)
            # As if the holder stalled past its expiry: the lease lapses and another claims it
            # (tried again if the holder's heartbeat renewed it in between).
            taken = False
            for _ in range(20):
                async with batch_env.sessions() as session, session.begin():
                    await session.execute(
                        update(SyncRun)
                        .where(SyncRun.id == run_id)
                        .values(lease_expires_at=func.now() - timedelta(seconds=1))
                    )
                if taken := await other.start(run_id):
                    break

            await asyncio.gather(paused.wait(), other.wait())
    run = await load_run(batch_env.sessions, run_id)
    state = await snapshot(batch_env)

    assert taken
    assert (run.status, run.error, run.fencing_token) == ("completed", None, 2)
    assert {d["external_id"]: d["total_messages"] for d in state["deals"]} == {
        c.id: len(c.messages) for c in dataset.chats
    }
    assert run.imported_messages == len(state["items"]) == len(state["keys"])
    assert run.processed_chats == len(dataset.chats)
