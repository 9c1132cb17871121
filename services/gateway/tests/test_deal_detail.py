"""One deal: its latest messages, the history, read and reply commands, request status."""

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from common.models import SendRequest

pytestmark = pytest.mark.usefixtures("fresh")


async def test_detail_has_latest_50_messages_oldest_first_and_a_link_to_older(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    deal = await seed.deal()
    for message_id in range(1, 56):
        await seed.message(deal, message_id, text=f"m{message_id}")

    body = (await client.get(f"/api/v1/deals/{deal.id}/", headers=auth())).json()
    older = (await client.get(body["messages_next"], headers=auth())).json()

    assert [m["id"] for m in body["messages"]] == [str(i) for i in range(6, 56)]
    assert [m["id"] for m in older["results"]] == ["5", "4", "3", "2", "1"]
    assert older["next"] is None


async def test_history_walks_newest_first_and_back(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    deal = await seed.deal()
    for message_id in range(1, 12):
        await seed.message(deal, message_id)
    url: str | None = f"/api/v1/deals/{deal.id}/messages?limit=4"
    pages = []
    while url is not None:
        page = (await client.get(url, headers=auth())).json()
        pages.append(page)
        url = page["next"]

    back = (await client.get(pages[-1]["previous"], headers=auth())).json()

    assert [m["id"] for page in pages for m in page["results"]] == [
        str(i) for i in range(11, 0, -1)
    ]
    assert back["results"] == pages[-2]["results"]
    assert pages[0]["previous"] is None


async def test_message_shows_versions_and_a_presigned_media_url(
    client: httpx.AsyncClient,
    seed: Any,
    auth: Callable[..., dict[str, str]],
    s3_test_client: Any,
    settings: Any,
) -> None:
    deal = await seed.deal()
    item = await seed.message(
        deal,
        7,
        text="third",
        edit_ts=1_767_300_000,
        edit_date="2026-01-01T20:40:00Z",
        media={"kind": "photo", "file_id": "f", "file_unique_id": "u", "file_size": 3},
        media_status="stored",
        media_key=f"media/{deal.id}/u",
    )
    await s3_test_client.put_object(
        Bucket=settings.s3_bucket, Key=f"media/{deal.id}/u", Body=b"jpg"
    )
    await seed.version(item, 1_767_200_000, "second")
    await seed.version(item, 1_767_300_000, "third")

    page = (await client.get(f"/api/v1/deals/{deal.id}/messages/", headers=auth())).json()
    message = page["results"][0]
    async with httpx.AsyncClient() as plain:
        picture = await plain.get(message["media"]["url"])

    assert message["edited"] is True
    assert [v["text"] for v in message["versions"]] == ["second", "third"]
    assert message["media"]["status"] == "stored"
    assert picture.content == b"jpg"


async def test_someone_elses_or_ownerless_or_unsynced_deal_is_404_everywhere(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    hidden = [
        await seed.deal(owner="222222222"),
        await seed.deal(owner=None),
        await seed.deal(synced=False),
    ]

    statuses = set()
    for deal in hidden:
        base = f"/api/v1/deals/{deal.id}"
        for method, path, body in [
            ("GET", "/", None),
            ("GET", "/messages/", None),
            ("POST", "/read/", {}),
            ("POST", "/messages/", {"text": "hi"}),
            ("GET", "/messages/requests/abc/", None),
        ]:
            answer = await client.request(method, base + path, json=body, headers=auth())
            statuses.add((answer.status_code, answer.headers["content-type"]))

    assert statuses == {(404, "application/problem+json")}


async def test_admin_sees_an_ownerless_deal(
    client: httpx.AsyncClient, seed: Any, admin: dict[str, str]
) -> None:
    deal = await seed.deal(owner=None)

    answer = await client.get(f"/api/v1/deals/{deal.id}/", headers=admin)

    assert answer.status_code == 200
    assert answer.json()["owner_user_id"] is None


@pytest.mark.parametrize("deal_id", ["not-a-uuid", "123", str(uuid.uuid4())])
async def test_malformed_or_unknown_deal_id_is_404(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], deal_id: str
) -> None:
    answer = await client.get(f"/api/v1/deals/{deal_id}/", headers=auth())

    assert answer.status_code == 404
    assert answer.json()["type"] == "https://chat-sync.example/problems/not-found"


async def test_mark_read_publishes_the_command(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]], commands: Any
) -> None:
    deal = await seed.deal(last_message_id="9")
    await seed.message(deal, 8)

    newest = await client.post(f"/api/v1/deals/{deal.id}/read/", headers=auth())
    chosen = await client.post(
        f"/api/v1/deals/{deal.id}/read", json={"message_id": "8"}, headers=auth()
    )
    published = await commands(2)

    assert newest.status_code == 202
    assert newest.json() == {"deal_id": str(deal.id), "read_up_to": "9"}
    assert chosen.json() == {"deal_id": str(deal.id), "read_up_to": "8"}
    bodies = [json.loads(message.body) for message in published]
    assert [m.routing_key for m in published] == ["deal.mark_read", "deal.mark_read"]
    assert [(b["deal_id"], b["message_id"]) for b in bodies] == [
        (str(deal.id), None),
        (str(deal.id), "8"),
    ]
    assert bodies[0]["requested_by"] == "111111111"


async def test_mark_read_of_an_unknown_message_is_404(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    deal = await seed.deal()

    answer = await client.post(
        f"/api/v1/deals/{deal.id}/read/", json={"message_id": "404"}, headers=auth()
    )

    assert answer.status_code == 404


async def test_reply_publishes_message_send_with_a_generated_request_id(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]], commands: Any
) -> None:
    deal = await seed.deal()

    answer = await client.post(
        f"/api/v1/deals/{deal.id}/messages/",
        json={"text": "Ready!", "reply_to_message_id": "5012"},
        headers=auth(),
    )
    published = await commands(1)

    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "queued"
    uuid.UUID(body["client_request_id"])
    assert body["status_url"] == (
        f"http://gateway.test/api/v1/deals/{deal.id}/messages/requests/{body['client_request_id']}/"
    )
    command = json.loads(published[0].body)
    assert published[0].routing_key == "message.send"
    assert command["text"] == "Ready!"
    assert command["reply_to_message_id"] == "5012"
    assert command["client_request_id"] == body["client_request_id"]


@pytest.mark.parametrize(
    "body",
    [
        {"text": ""},
        {"text": "x" * 4097},
        {},
        {"text": "ok", "client_request_id": "has space"},
        {"text": "ok", "reply_to_message_id": "abc"},
        {"text": "nul\u0000"},
        {"text": " \n\t "},
    ],
)
async def test_bad_reply_is_a_422_problem(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]], body: Any
) -> None:
    deal = await seed.deal()

    answer = await client.post(f"/api/v1/deals/{deal.id}/messages/", json=body, headers=auth())

    assert answer.status_code == 422
    assert answer.json()["errors"]


async def test_reply_to_an_imported_deal_is_a_409(
    client: httpx.AsyncClient, seed: Any, admin: dict[str, str]
) -> None:
    deal = await seed.deal(source="external", external_id="ext:c1", business_connection_id=None)

    answer = await client.post(
        f"/api/v1/deals/{deal.id}/messages/", json={"text": "hi"}, headers=admin
    )

    assert answer.status_code == 409


async def test_request_status_is_queued_until_the_worker_records_it(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]], sessions: Any
) -> None:
    deal = await seed.deal()
    url = f"/api/v1/deals/{deal.id}/messages/requests/r-1/"
    before = (await client.get(url, headers=auth())).json()
    async with sessions() as session, session.begin():
        session.add(
            SendRequest(
                deal_id=deal.id, client_request_id="r-1", text="x", status="sent", message_id="77"
            )
        )

    after = (await client.get(url, headers=auth())).json()

    assert before == {
        "client_request_id": "r-1",
        "status": "queued",
        "message_id": None,
        "reason": None,
    }
    assert after == {
        "client_request_id": "r-1",
        "status": "sent",
        "message_id": "77",
        "reason": None,
    }


async def test_avatar_redirects_to_stored_then_original_else_404(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    stored = await seed.customer(avatar_key="avatars/x/u.jpg", avatar_url="https://up/a.jpg")
    original = await seed.customer(avatar_url="https://upstream.example/a.jpg")
    none = await seed.customer()
    for customer in (stored, original, none):
        await seed.deal(customer=customer)

    answers = [
        await client.get(f"/api/v1/customers/{c.id}/avatar/", headers=auth())
        for c in (stored, original, none)
    ]

    assert [a.status_code for a in answers] == [302, 302, 404]
    assert "avatars/x/u.jpg" in answers[0].headers["location"]
    assert "Signature=" in answers[0].headers["location"]
    assert answers[1].headers["location"] == "https://upstream.example/a.jpg"


async def test_avatar_of_a_customer_without_a_visible_deal_is_404(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    customer = await seed.customer(avatar_url="https://upstream.example/a.jpg")
    await seed.deal(customer=customer, owner="222222222")

    answer = await client.get(f"/api/v1/customers/{customer.id}/avatar", headers=auth())

    assert answer.status_code == 404
