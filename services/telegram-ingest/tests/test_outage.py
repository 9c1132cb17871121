import asyncio
from collections.abc import AsyncIterator
from typing import Literal
from urllib.parse import urlsplit

import pytest
from ingest_fakes import Events, FakeBotAPI, StartApp, TcpProxy, load_sample
from pydantic import SecretStr

from common.events import Event
from common.settings import Settings
from common.testing import Infrastructure, settings_for
from telegram_ingest.app import open_ingest
from telegram_ingest.publishing import Unavailable


@pytest.fixture
async def proxy(infrastructure: Infrastructure) -> AsyncIterator[TcpProxy]:
    target = urlsplit(infrastructure.rabbitmq_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    yield proxy
    await proxy.cut()


def _update(update_id: int) -> dict[str, object]:
    return load_sample("business_connection") | {"update_id": update_id}


async def test_broker_cut_is_503_and_recovers_without_restart(
    infrastructure: Infrastructure,
    bot_api: FakeBotAPI,
    proxy: TcpProxy,
    start_app: StartApp,
    events: Events,
) -> None:
    vhost = urlsplit(infrastructure.rabbitmq_url).path
    settings = settings_for(
        infrastructure,
        rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}{vhost}",
        telegram_api_url=bot_api.url,
        publish_confirm_timeout=1.0,
    )
    async with start_app(settings) as client:
        before = await client.post("/telegram/webhook/", json=_update(1))
        await proxy.cut()
        during = await client.post("/telegram/webhook/", json=_update(2))
        not_ready = await client.get("/readyz")
        published_during = await events.drain()

        await proxy.restore()
        accepted: list[int] = []
        for update_id in range(3, 200):
            response = await client.post("/telegram/webhook/", json=_update(update_id))
            if response.status_code == 200:
                accepted.append(update_id)
                break
            await asyncio.sleep(0.05)
        ready = await client.get("/readyz")

    assert before.status_code == 200
    assert during.status_code == 503
    assert not_ready.status_code == 503
    assert not_ready.json()["dependency"] == "rabbitmq"
    assert [event["update_id"] for event in published_during] == [1]
    assert accepted, "no update accepted after the broker came back"
    assert ready.status_code == 200
    published_after = {event["update_id"] for event in await events.drain()}
    assert set(accepted) <= published_after


class _Unroutable(Event):
    type: Literal["telegram-ingest.test.nobody-listens"] = "telegram-ingest.test.nobody-listens"


async def test_unroutable_event_is_not_taken_as_delivered(
    app_settings: Settings, private_vhost: str
) -> None:
    # No queue is bound for the routing key, so the broker returns the message: that would
    # be a lost update, so it must fail like a missing confirm (503), not pass as a 200.
    # A vhost of its own: other tests' catch-all listeners must not route it.
    settings = app_settings.model_copy(update={"rabbitmq_url": SecretStr(private_vhost)})
    async with open_ingest(settings) as ingest:
        with pytest.raises(Unavailable) as refused:
            await ingest.publisher.publish(_Unroutable())

    assert refused.value.reason == "broker"


async def test_start_waits_for_a_broker_that_comes_up_late(
    infrastructure: Infrastructure, bot_api: FakeBotAPI, proxy: TcpProxy, events: Events
) -> None:
    vhost = urlsplit(infrastructure.rabbitmq_url).path
    settings = settings_for(
        infrastructure,
        rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}{vhost}",
        telegram_api_url=bot_api.url,
    )
    await proxy.cut()

    async def start_and_publish() -> None:
        async with open_ingest(settings, connect_wait_seconds=10) as ingest:
            await ingest.handle(_update(11))

    starting = asyncio.ensure_future(start_and_publish())
    await asyncio.sleep(0.5)
    waited = not starting.done()
    await proxy.restore()
    await asyncio.wait_for(starting, 10)

    assert waited
    assert (await events.next())["update_id"] == 11
