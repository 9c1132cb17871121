import asyncio
import json
from collections.abc import Callable

import httpx
from asgi_lifespan import LifespanManager
from ingest_fakes import Events, FakeBotAPI, connection_result, load_sample

from common.settings import Settings
from telegram_ingest.app import build_app, open_ingest
from telegram_ingest.polling import poll


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _offsets(bot_api: FakeBotAPI) -> list[int]:
    return [int(params.get("offset", 0)) for params in bot_api.called("getUpdates")]


async def test_offset_advances_only_past_confirmed_updates(
    app_settings: Settings, bot_api: FakeBotAPI, events: Events
) -> None:
    stranger = load_sample("business_message")
    stranger["business_message"]["business_connection_id"] = "conn-2"
    bot_api.updates = [
        load_sample("business_connection"),  # 900000001
        stranger,  # 900000002, its owner cannot be looked up yet
        load_sample("edited_business_message"),  # 900000006
    ]
    stop = asyncio.Event()
    async with open_ingest(app_settings) as ingest:
        polling = asyncio.ensure_future(
            poll(ingest, stop, long_poll_seconds=0, backoff_seconds=0.02)
        )
        await _until(lambda: _offsets(bot_api).count(900000002) >= 3)
        stuck = await events.drain()

        bot_api.connections["conn-2"] = connection_result("conn-2")
        await _until(lambda: 900000007 in _offsets(bot_api))
        stop.set()
        final_offset = await polling

    first_call, *_ = bot_api.calls
    assert first_call[0] == "deleteWebhook"
    assert [event["update_id"] for event in stuck] == [900000001]
    assert [(e["type"], e["update_id"]) for e in await events.drain()] == [
        ("telegram.message.received", 900000002),
        ("telegram.message.edited", 900000006),
    ]
    assert final_offset == 900000007
    assert sorted(set(_offsets(bot_api))) == [0, 900000002, 900000007]
    assert json.loads(bot_api.called("getUpdates")[0]["allowed_updates"]) == [
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
    ]


async def test_unparseable_update_is_parked_and_passed(
    app_settings: Settings, bot_api: FakeBotAPI, events: Events
) -> None:
    broken = load_sample("business_connection")
    broken["business_connection"]["is_enabled"] = "maybe"
    bot_api.updates = [broken]
    stop = asyncio.Event()

    async with open_ingest(app_settings) as ingest:
        polling = asyncio.ensure_future(poll(ingest, stop, long_poll_seconds=0))
        await _until(lambda: 900000002 in _offsets(bot_api))
        stop.set()
        await polling

    assert [event["type"] for event in await events.drain()] == ["telegram.update.unparsed"]


async def test_poll_mode_app_serves_probes_and_stops_with_its_lifespan(
    app_settings: Settings, bot_api: FakeBotAPI, events: Events
) -> None:
    bot_api.updates = [load_sample("business_connection")]
    app = build_app(app_settings, polling=True)

    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://i"
        ) as client,
    ):
        await _until(lambda: 900000002 in _offsets(bot_api))
        ready = await client.get("/readyz")
        webhook = await client.post("/telegram/webhook/", json={"update_id": 1})
    calls_after_stop = len(bot_api.calls)
    await asyncio.sleep(0.2)

    assert ready.status_code == 200
    assert webhook.status_code == 404
    assert [event["update_id"] for event in await events.drain()] == [900000001]
    assert len(bot_api.calls) == calls_after_stop


async def test_update_no_event_can_carry_is_skipped_not_retried_forever(
    app_settings: Settings, bot_api: FakeBotAPI, events: Events
) -> None:
    bot_api.updates = [
        {"update_id": 5, "business_message": {"text": "\ud800"}},
        load_sample("business_connection"),
    ]
    stop = asyncio.Event()

    async with open_ingest(app_settings) as ingest:
        polling = asyncio.ensure_future(poll(ingest, stop, long_poll_seconds=0))
        await _until(lambda: 900000002 in _offsets(bot_api))
        stop.set()
        await polling

    assert [event["update_id"] for event in await events.drain()] == [900000001]
