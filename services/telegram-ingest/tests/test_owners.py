import asyncio

import httpx
from aiogram import Bot
from ingest_fakes import CONNECTION_ID, OWNER_ID, Events, FakeBotAPI, connection_result, load_sample

from telegram_ingest.owners import Owners


async def test_unknown_connection_is_resolved_once_through_get_business_connection(
    client: httpx.AsyncClient, events: Events, bot_api: FakeBotAPI
) -> None:
    bot_api.connections[CONNECTION_ID] = connection_result()

    first = await client.post("/telegram/webhook/", json=load_sample("business_message"))
    second = await client.post("/telegram/webhook/", json=load_sample("edited_business_message"))

    assert (first.status_code, second.status_code) == (200, 200)
    published = [await events.next(), await events.next()]
    assert [event["owner_user_id"] for event in published] == [OWNER_ID, OWNER_ID]
    assert bot_api.called("getBusinessConnection") == [{"business_connection_id": CONNECTION_ID}]


async def test_connection_update_spares_the_lookup(
    client: httpx.AsyncClient, events: Events, bot_api: FakeBotAPI
) -> None:
    await client.post("/telegram/webhook/", json=load_sample("business_connection"))

    response = await client.post(
        "/telegram/webhook/", json=load_sample("deleted_business_messages")
    )

    assert response.status_code == 200
    assert [event["owner_user_id"] for event in await events.drain()] == [OWNER_ID, OWNER_ID]
    assert bot_api.called("getBusinessConnection") == []


async def test_failed_lookup_is_503_and_publishes_nothing_until_it_works(
    client: httpx.AsyncClient, events: Events, bot_api: FakeBotAPI
) -> None:
    bot_api.broken.add("getBusinessConnection")
    refused = await client.post("/telegram/webhook/", json=load_sample("business_message"))
    unknown_published = await events.drain()
    bot_api.broken.clear()

    missing = await client.post("/telegram/webhook/", json=load_sample("business_message"))
    bot_api.connections[CONNECTION_ID] = connection_result()
    retried = await client.post("/telegram/webhook/", json=load_sample("business_message"))

    assert (refused.status_code, missing.status_code, retried.status_code) == (503, 503, 200)
    assert unknown_published == []
    assert [event["type"] for event in await events.drain()] == ["telegram.message.received"]


async def test_concurrent_updates_each_get_their_own_confirm(
    client: httpx.AsyncClient, events: Events
) -> None:
    await client.post("/telegram/webhook/", json=load_sample("business_connection"))
    await events.next()
    updates = []
    for number in range(200):
        update = load_sample("business_message")
        update["update_id"] = 1000 + number
        update["business_message"]["message_id"] = 1000 + number
        updates.append(update)

    answers = await asyncio.gather(
        *(client.post("/telegram/webhook/", json=update) for update in updates)
    )

    assert {answer.status_code for answer in answers} == {200}
    published = await events.drain()
    assert sorted(int(event["message_id"]) for event in published) == list(range(1000, 1200))


async def test_concurrent_updates_of_a_new_connection_share_one_lookup(
    client: httpx.AsyncClient, events: Events, bot_api: FakeBotAPI
) -> None:
    bot_api.connections[CONNECTION_ID] = connection_result()
    names = ["business_message", "business_message_photo", "deleted_business_messages"]

    answers = await asyncio.gather(
        *(client.post("/telegram/webhook/", json=load_sample(name)) for name in names)
    )

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert len(bot_api.called("getBusinessConnection")) == 1
    assert {event["owner_user_id"] for event in await events.drain()} == {OWNER_ID}


def test_owner_map_forgets_the_least_recently_used_first() -> None:
    owners = Owners(Bot("1:unused"), max_size=2)
    owners.remember("a", 1)
    owners.remember("b", 2)
    owners.known("a")

    owners.remember("c", 3)

    assert (owners.known("a"), owners.known("b"), owners.known("c")) == ("1", None, "3")
