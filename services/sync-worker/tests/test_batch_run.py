import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from common.events import CustomerImported, DealUpdated, SyncProgress, SyncStart
from common.ids import customer_id_for_external, deal_id_for_external, imported_message_key
from common.models import Customer
from sync_worker.batch import testing
from sync_worker.batch.client import RetryPolicy
from sync_worker.batch.consumer import on_sync_start
from sync_worker.batch.testing import (
    Env,
    api_for,
    create_run,
    load_run,
    run_once,
    snapshot,
    upstream,
)
from sync_worker.devserver.app import Faults
from sync_worker.devserver.data import Chat, Dataset, generate

# The shared fixtures (this folder's conftest belongs to the live path).
batch_broker = testing.batch_broker
batch_dynamo = testing.batch_dynamo
batch_tap = testing.batch_tap
batch_env = testing.batch_env


async def test_initial_run_imports_every_chat_as_an_external_deal(batch_env: Env) -> None:
    dataset = generate(chats=12, max_messages=15, seed=5)
    total = sum(len(chat.messages) for chat in dataset.chats)
    with upstream(dataset) as up:
        async with api_for(up) as api:
            runner = batch_env.runner(api)
            run_id = await create_run(batch_env.sessions)
            kept = Customer(
                id=customer_id_for_external(dataset.chats[1].customer_id),
                source="external",
                external_id=dataset.chats[1].customer_id,
                name="Named by an operator",
            )
            async with batch_env.sessions() as session, session.begin():
                session.add(kept)

            counted = _imported_metric()

            run = await run_once(runner, run_id)
    state = await snapshot(batch_env)
    events = await batch_env.events.drain()

    assert (run.status, run.error, run.kind) == ("completed", None, "initial")
    assert _imported_metric() - counted == total
    assert (run.processed_chats, run.imported_messages, run.failed_chats) == (12, total, 0)
    chat = dataset.chats[0]
    deal = next(d for d in state["deals"] if d["external_id"] == chat.id)
    newest = chat.messages[0]
    newest_at = datetime.fromisoformat(newest["created_at"])
    assert deal == deal | {
        "id": str(deal_id_for_external(chat.id)),
        "source": "external",
        "owner_user_id": 111111111,
        "customer_id": str(customer_id_for_external(chat.customer_id)),
        "last_message_id": newest["id"],
        "last_message_key": imported_message_key(newest_at, newest["id"]),
        "last_message_at": newest_at,
        "last_message": {
            "text": newest["text"],
            "direction": newest["direction"],
            "date": newest["created_at"],
        },
        "total_messages": len(chat.messages),
        "unread_count": 0,
        "listed": True,
        "sync_status": "synced",
    }
    assert len(state["items"]) == len(state["keys"]) == total
    assert {d["external_id"]: d["total_messages"] for d in state["deals"]} == {
        c.id: len(c.messages) for c in dataset.chats
    }
    item = next(i for i in state["items"] if i["message_id"] == newest["id"])
    assert item == {
        "deal_id": deal["id"],
        "sk": deal["last_message_key"],
        "message_id": newest["id"],
        "chat_id": chat.id,
        "direction": newest["direction"],
        "sent_by": "customer" if newest["direction"] == "incoming" else "owner",
        "sender": {"id": chat.customer_id, "name": dataset.customers[chat.customer_id]["name"]}
        if newest["direction"] == "incoming"
        else {"id": "111111111", "name": ""},
        "date": newest["created_at"],
        "source": "imported",
        "text": newest["text"],
        "entities": [],
        "caption_entities": [],
        "edit_ts": 0,
    }
    assert ("external", "Named by an operator") in [(c[1], c[2]) for c in state["customers"]]
    assert len(state["customers"]) == 12
    updates = Counter(e.deal_id for e in events if isinstance(e, DealUpdated))
    assert len(updates) == 12
    assert set(updates.values()) == {1}
    assert {e.external_id for e in events if isinstance(e, CustomerImported)} == {
        c.customer_id for c in dataset.chats
    }
    progress = [e for e in events if isinstance(e, SyncProgress)]
    assert len(progress) >= 12 // 5 + 1
    assert progress[-1].status == "completed"
    assert progress[-1].imported_messages == total


def _imported_metric() -> float:
    return REGISTRY.get_sample_value("chat_sync_batch_messages_imported_total") or 0.0


def _message(chat_id: str, number: int, stamp: str) -> dict[str, Any]:
    return {"id": f"{chat_id}_m{number}", "text": f"at {stamp}", "created_at": stamp}


def _boundary_dataset() -> Dataset:
    chats = [
        Chat(
            "near",
            "c_near",
            None,
            [
                _message("near", 4, "2026-01-02T10:00:00Z"),
                _message("near", 3, "2026-01-01T10:00:00Z"),
                _message("near", 2, "2026-01-01T00:00:00Z"),
                _message("near", 1, "2025-12-31T23:59:59.999000Z"),
            ],
        ),
        Chat("edge", "c_edge", None, [_message("edge", 1, "2025-12-31T23:59:59Z")]),
        Chat("old", "c_old", None, [_message("old", 1, "2025-06-01T00:00:00Z")]),
    ]
    customers = {f"c_{name}": {"id": f"c_{name}", "name": name} for name in ("near", "edge", "old")}
    return Dataset(chats=chats, customers=customers)


@pytest.mark.parametrize(
    ("max_date", "expected"),
    [
        ("2026-01-01", ["near_m4", "near_m3", "near_m2"]),
        ("2026-01-01T12:00:00+02:00", ["near_m4", "near_m3"]),
        ("2025-12-31T23:59:59Z", ["near_m4", "near_m3", "near_m2", "near_m1", "edge_m1"]),
    ],
)
async def test_max_date_imports_messages_at_or_after_it(
    batch_env: Env, max_date: str, expected: list[str]
) -> None:
    dataset = _boundary_dataset()
    with upstream(dataset) as up:
        async with api_for(up) as api:
            runner = batch_env.runner(api)
            command = SyncStart.model_validate({"task_id": str(uuid.uuid4()), "max_date": max_date})
            await create_run(batch_env.sessions, run_id=command.task_id)

            await on_sync_start(command, runner)
            await runner.wait()
    run = await load_run(batch_env.sessions, command.task_id)
    state = await snapshot(batch_env)

    assert run.status == "completed"
    assert sorted(i["message_id"] for i in state["items"]) == sorted(expected)
    assert {d["external_id"] for d in state["deals"]} == {m.split("_")[0] for m in expected}
    assert all(d["owner_user_id"] is None and d["listed"] for d in state["deals"])
    assert "/api/v1/chats/old/messages" not in up.chaos.requests


async def test_incremental_run_stops_at_the_first_unchanged_chat(batch_env: Env) -> None:
    dataset = generate(chats=8, max_messages=5, seed=2)
    with upstream(dataset) as up:
        async with api_for(up) as api:
            runner = batch_env.runner(api)
            await run_once(runner, await create_run(batch_env.sessions))
            before = await snapshot(batch_env)
            await batch_env.events.drain()
            moved = dataset.chats[5]
            dataset.add_message(moved.id, "back again", datetime(2026, 2, 1, tzinfo=UTC))
            up.chaos.requests.clear()

            run = await run_once(runner, await create_run(batch_env.sessions))
    after = await snapshot(batch_env)
    events = await batch_env.events.drain()

    assert (run.status, run.kind) == ("completed", "incremental")
    assert (run.processed_chats, run.imported_messages, run.skipped_chats) == (1, 1, 0)
    assert up.chaos.requests.count("/api/v1/chats") == 1
    assert [p for p in up.chaos.requests if p.endswith("/messages")] == [
        f"/api/v1/chats/{moved.id}/messages"
    ]
    deal = next(d for d in after["deals"] if d["external_id"] == moved.id)
    old = next(d for d in before["deals"] if d["external_id"] == moved.id)
    assert deal["total_messages"] == old["total_messages"] + 1
    assert deal["last_message"]["text"] == "back again"
    assert deal["version"] == old["version"] + 1
    assert len(after["items"]) == len(before["items"]) + 1
    assert [e.deal_id for e in events if isinstance(e, DealUpdated)] == [
        deal_id_for_external(moved.id)
    ]


async def test_server_errors_rate_limits_and_timeouts_are_recovered(batch_env: Env) -> None:
    dataset = generate(chats=10, max_messages=12, seed=4)
    faults = Faults(failure_rate=0.2, rate_limit_rate=0.1, retry_after_seconds=0, seed=9)
    with upstream(dataset, faults) as up:
        up.chaos.slow_every, up.chaos.slow_seconds = 9, 0.6
        retry = RetryPolicy(attempts=8, backoff_base=0.02, backoff_max=0.1)
        async with api_for(up, timeout=0.3, retry=retry) as api:
            runner = batch_env.runner(api)

            run = await run_once(runner, await create_run(batch_env.sessions))
    state = await snapshot(batch_env)

    total = sum(len(chat.messages) for chat in dataset.chats)
    assert (run.status, run.error, run.failed_chats) == ("completed", None, 0)
    assert run.imported_messages == len(state["items"]) == len(state["keys"]) == total
    assert {d["external_id"]: d["total_messages"] for d in state["deals"]} == {
        c.id: len(c.messages) for c in dataset.chats
    }
    needed = 2 + len(dataset.chats) + sum(-(-len(c.messages) // 7) for c in dataset.chats)
    assert api.calls > needed  # calls were refused or timed out, and repeated


async def test_failed_chat_is_retried_first_by_the_next_run(batch_env: Env) -> None:
    dataset = generate(chats=6, max_messages=4, seed=8)
    broken = dataset.chats[2]
    customer = dataset.customers.pop(broken.customer_id)
    with upstream(dataset) as up:
        async with api_for(up) as api:
            runner = batch_env.runner(api)
            first = await run_once(runner, await create_run(batch_env.sessions))
            between = await snapshot(batch_env)
            dataset.customers[broken.customer_id] = customer
            up.chaos.requests.clear()

            second = await run_once(runner, await create_run(batch_env.sessions))
    after = await snapshot(batch_env)

    assert (first.status, first.failed_chats, first.processed_chats) == ("completed", 1, 6)
    assert between["retry"] == [broken.id]
    assert broken.id not in {d["external_id"] for d in between["deals"]}
    assert (second.status, second.kind, second.failed_chats) == ("completed", "incremental", 0)
    assert after["retry"] == []
    deal = next(d for d in after["deals"] if d["external_id"] == broken.id)
    assert (deal["listed"], deal["total_messages"]) == (True, len(broken.messages))
    # Retried before the walk, which then stops at the newest chat: it is unchanged.
    assert up.chaos.requests[:2] == [
        f"/api/v1/customers/{broken.customer_id}",
        f"/api/v1/chats/{broken.id}/messages",
    ]
    assert up.chaos.requests.count("/api/v1/chats") == 1


async def test_wrong_upstream_token_fails_the_run_at_once(batch_env: Env) -> None:
    with upstream(generate(chats=3)) as up:
        async with api_for(up, token="not-the-token") as api:
            runner = batch_env.runner(api)
            started = time.monotonic()

            run = await run_once(runner, await create_run(batch_env.sessions))
            elapsed = time.monotonic() - started

    assert run.status == "failed"
    assert run.error is not None
    assert "401" in run.error
    assert "EXTERNAL_API_TOKEN" in run.error
    assert run.finished_at is not None
    assert up.chaos.requests == ["/api/v1/chats"]
    assert elapsed < 2


async def test_failed_run_is_continued_by_the_next_start(batch_env: Env) -> None:
    dataset = generate(chats=14, max_messages=20, seed=6)
    max_date = datetime.fromisoformat(dataset.chats[11].messages[0]["created_at"])
    long_chat = max(dataset.chats[5:10], key=lambda chat: len(chat.messages))
    messages_path = f"/api/v1/chats/{long_chat.id}/messages"
    down = {"on": True}
    with upstream(dataset) as up:
        # The upstream goes down in the middle of a long chat on the second page of chats.
        up.chaos.fail = lambda path, query: (
            down["on"] and path == messages_path and "cursor" in query
        )
        retry = RetryPolicy(attempts=3, backoff_base=0.01)
        async with api_for(up, retry=retry) as api:
            runner = batch_env.runner(api)
            failed_id = await create_run(batch_env.sessions, max_date=max_date)
            failed = await run_once(runner, failed_id)
            down["on"] = False
            requests_before = list(up.chaos.requests)

            # The gateway sets resumed_from; the worker also finds the failed run by itself.
            resumed = await run_once(runner, await create_run(batch_env.sessions))
    state = await snapshot(batch_env)

    assert failed.status == "failed"
    assert failed.error is not None
    assert "unavailable" in failed.error
    assert failed.checkpoint["current"]["chat"]["id"] == long_chat.id
    assert (resumed.status, resumed.resumed_from, resumed.max_date) == (
        "completed",
        failed_id,
        max_date,
    )
    expected = {
        chat.id: len([m for m in chat.messages if m["created_at"] >= max_date.isoformat()[:19]])
        for chat in dataset.chats
        if chat.messages[0]["created_at"] >= max_date.isoformat()[:19]
    }
    assert {d["external_id"]: d["total_messages"] for d in state["deals"]} == expected
    assert failed.imported_messages + resumed.imported_messages == sum(expected.values())
    assert failed.processed_chats + resumed.processed_chats == len(expected)
    assert len(state["items"]) == len(state["keys"])
    # What the failed run committed is not fetched again, nor the long chat's first pages.
    later = up.chaos.requests[len(requests_before) :]
    committed = {f"/api/v1/chats/{c.id}/messages" for c in dataset.chats[: failed.processed_chats]}
    assert failed.processed_chats == dataset.chats.index(long_chat)
    assert not committed & set(later)
    assert later.count(messages_path) == -(-len(long_chat.messages) // 7) - 1


async def test_resume_finds_its_chat_after_the_list_shifted(batch_env: Env) -> None:
    dataset = generate(chats=12, max_messages=20, seed=6)
    long_chat = max(dataset.chats[5:10], key=lambda chat: len(chat.messages))
    messages_path = f"/api/v1/chats/{long_chat.id}/messages"
    down = {"on": True}
    with upstream(dataset) as up:
        up.chaos.fail = lambda path, query: (
            down["on"] and path == messages_path and "cursor" in query
        )
        async with api_for(up, retry=RetryPolicy(attempts=2, backoff_base=0.01)) as api:
            runner = batch_env.runner(api)
            failed = await run_once(runner, await create_run(batch_env.sessions))
            down["on"] = False
            # Activity in the oldest chat moves it to the front: every other chat shifts by one.
            moved = dataset.chats[-1]
            dataset.add_message(moved.id, "moved", datetime(2026, 2, 1, tzinfo=UTC))
            mark = len(up.chaos.requests)

            resumed = await run_once(runner, await create_run(batch_env.sessions))
            after_resume = await snapshot(batch_env)
            later = up.chaos.requests[mark:]
            following = await run_once(runner, await create_run(batch_env.sessions))
    final = await snapshot(batch_env)

    assert failed.status == "failed"
    assert (resumed.status, resumed.failed_chats, resumed.skipped_chats) == ("completed", 0, 1)
    assert later.count(messages_path) == -(-len(long_chat.messages) // 7) - 1
    assert after_resume["retry"] == []
    assert moved.id not in {d["external_id"] for d in after_resume["deals"]}
    assert (following.kind, following.processed_chats) == ("incremental", 1)
    assert {d["external_id"]: d["total_messages"] for d in final["deals"]} == {
        c.id: len(c.messages) for c in dataset.chats
    }
    assert len(final["items"]) == len(final["keys"]) == sum(len(c.messages) for c in dataset.chats)
