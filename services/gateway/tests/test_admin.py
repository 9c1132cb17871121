"""The admin UI: behind a login, slowed down on failures, read-only views with search."""

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from common.models import SyncRun
from gateway.admin import auth as admin_auth

pytestmark = pytest.mark.usefixtures("fresh")


async def _login(client: httpx.AsyncClient, password: str) -> httpx.Response:
    return await client.post("/admin/login", data={"username": "admin", "password": password})


async def test_admin_pages_redirect_to_the_login(client: httpx.AsyncClient) -> None:
    client.cookies.clear()

    answer = await client.get("/admin/deal/list")

    assert answer.status_code == 302
    assert answer.headers["location"].endswith("/admin/login")


async def test_failed_logins_are_refused_and_each_waits_longer(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_auth, "FAILED_LOGIN_DELAY_SECONDS", 0.2)
    client.cookies.clear()
    durations = []
    for _ in range(2):
        started = time.monotonic()
        answer = await _login(client, "wrong")
        durations.append(time.monotonic() - started)
        assert answer.status_code == 400

    assert durations[0] >= 0.2
    assert durations[1] >= 0.4
    assert "chat_sync_admin_session" not in client.cookies


async def test_logged_in_admin_browses_and_searches_deals(
    client: httpx.AsyncClient, seed: Any
) -> None:
    client.cookies.clear()
    await seed.deal(external_id="tg:conn-a:424242")
    await seed.deal(external_id="tg:conn-a:999999")

    login = await _login(client, "test-admin-password")
    pages = {
        name: await client.get(f"/admin/{name}/list")
        for name in ("business-connection", "customer", "deal", "sync-run")
    }
    search = await client.get("/admin/deal/list", params={"search": "424242"})
    client.cookies.clear()

    assert login.status_code == 302
    assert {name: page.status_code for name, page in pages.items()} == dict.fromkeys(pages, 200)
    assert "tg:conn-a:424242" in search.text
    assert "tg:conn-a:999999" not in search.text


async def test_admin_views_are_read_only(client: httpx.AsyncClient, seed: Any) -> None:
    client.cookies.clear()
    deal = await seed.deal()
    await _login(client, "test-admin-password")

    create = await client.get("/admin/deal/create")
    edit = await client.get(f"/admin/deal/edit/{deal.id}")
    delete = await client.delete("/admin/deal/delete", params={"pks": str(deal.id)})
    client.cookies.clear()

    assert {create.status_code, edit.status_code, delete.status_code} <= {403, 404, 405}


async def test_admin_mark_read_action_publishes_the_command(
    client: httpx.AsyncClient, seed: Any, commands: Any
) -> None:
    client.cookies.clear()
    deal = await seed.deal()
    await _login(client, "test-admin-password")

    answer = await client.get("/admin/deal/action/mark-read", params={"pks": str(deal.id)})
    published = await commands(1)
    client.cookies.clear()

    assert answer.status_code == 302
    assert json.loads(published[0].body)["deal_id"] == str(deal.id)


async def test_admin_start_sync_action_creates_a_pending_run_and_publishes_it(
    client: httpx.AsyncClient, commands: Any, sessions: Any
) -> None:
    client.cookies.clear()
    await _login(client, "test-admin-password")

    answer = await client.get("/admin/sync-run/action/start-sync", params={"pks": ""})
    published = await commands(1)
    client.cookies.clear()

    async with sessions() as session:
        runs = (await session.scalars(select(SyncRun))).all()
    assert answer.status_code == 302
    assert [run.status for run in runs] == ["pending"]
    assert published[0].routing_key == "sync.start"
    assert json.loads(published[0].body)["task_id"] == str(runs[0].id)
