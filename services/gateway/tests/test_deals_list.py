"""The deal list: keyset walks, filters, visibility of rows, input errors."""

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text

pytestmark = pytest.mark.usefixtures("fresh")

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _walk(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], between: Any = None
) -> list[str]:
    seen: list[str] = []
    next_url: str | None = url
    while next_url is not None:
        page = await client.get(next_url, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        seen.extend(deal["id"] for deal in body["results"])
        next_url = body["next"]
        if between is not None:
            await between()
    return seen


async def test_walk_visits_every_deal_exactly_once_in_activity_order(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    # Ties on last_message_at are broken by id.
    deals = [await seed.deal(at=T0 + timedelta(minutes=i // 3)) for i in range(23)]
    expected = [
        str(d.id) for d in sorted(deals, key=lambda d: (d.last_message_at, d.id), reverse=True)
    ]

    seen = await _walk(client, "/api/v1/deals/?limit=4", auth())

    assert seen == expected


async def test_previous_links_walk_back_to_the_first_page(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    for i in range(9):
        await seed.deal(at=T0 + timedelta(minutes=i))
    first = (await client.get("/api/v1/deals?limit=4", headers=auth())).json()
    second = (await client.get(first["next"], headers=auth())).json()
    third = (await client.get(second["next"], headers=auth())).json()

    back = (await client.get(third["previous"], headers=auth())).json()
    front = (await client.get(back["previous"], headers=auth())).json()

    assert first["previous"] is None
    assert [d["id"] for d in back["results"]] == [d["id"] for d in second["results"]]
    assert [d["id"] for d in front["results"]] == [d["id"] for d in first["results"]]
    assert front["previous"] is None
    assert third["next"] is None
    assert first["next"].startswith("http://gateway.test/api/v1/deals?")


async def test_walk_with_concurrent_inserts_visits_every_original_deal_once(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    originals = {str((await seed.deal(at=T0 + timedelta(seconds=10 * i))).id) for i in range(30)}
    inserted: list[str] = []
    step = iter(range(1000))

    async def insert_around() -> None:
        # New activity on top, old imports at the bottom and in the middle, at once.
        n = next(step)
        moments = [
            T0 + timedelta(days=1, seconds=n),
            T0 - timedelta(days=1, seconds=n),
            T0 + timedelta(seconds=10 * (n % 30) + 5),
        ]
        made = await asyncio.gather(*(seed.deal(at=moment) for moment in moments))
        inserted.extend(str(deal.id) for deal in made)

    seen = await _walk(client, "/api/v1/deals/?limit=7", auth(), between=insert_around)

    assert len(seen) == len(set(seen))
    assert originals <= set(seen)
    assert set(seen) <= originals | set(inserted)


async def test_updated_since_walks_the_change_feed_oldest_change_first(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]], sessions: Any
) -> None:
    deals = [await seed.deal(at=T0 + timedelta(minutes=i)) for i in range(7)]
    async with sessions() as session, session.begin():
        for i, deal in enumerate(deals):
            await session.execute(
                text("UPDATE deal SET updated_at = :at WHERE id = :id"),
                {"at": T0 + timedelta(hours=7 - i), "id": deal.id},
            )

    seen = await _walk(client, "/api/v1/deals/?limit=2&updated_since=2026-01-01T03:00:00Z", auth())

    assert seen == [str(d.id) for d in reversed(deals[:5])]


async def test_filters_select_by_source_connection_and_unread(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    tg_unread = await seed.deal(unread_count=2, business_connection_id="conn-b")
    tg_read = await seed.deal(business_connection_id="conn-a")
    external = await seed.deal(
        source="external", external_id="ext:chat_1", business_connection_id=None, chat_id=None
    )

    async def ids(query: str) -> set[str]:
        answer = await client.get(f"/api/v1/deals/?{query}", headers=auth())
        assert answer.status_code == 200, answer.text
        return {deal["id"] for deal in answer.json()["results"]}

    assert await ids("source=external") == {str(external.id)}
    assert await ids("source=telegram") == {str(tg_unread.id), str(tg_read.id)}
    assert await ids("business_connection_id=conn-b") == {str(tg_unread.id)}
    assert await ids("unread=true") == {str(tg_unread.id)}
    assert await ids("unread=false") == {str(tg_unread.id), str(tg_read.id), str(external.id)}


async def test_deal_json_has_the_documented_shape(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    customer = await seed.customer(avatar_url="https://example.com/a.jpg", external_id="222222222")
    deal = await seed.deal(customer=customer, chat_id=222222222, read_sync_status="accepted")

    body = (await client.get("/api/v1/deals/", headers=auth())).json()

    item = body["results"][0]
    assert item["id"] == str(deal.id)
    assert item["chat_id"] == "222222222"
    assert item["owner_user_id"] == "111111111"
    assert item["external_id"] == "tg:conn-a:222222222"
    assert item["customer"] == {
        "id": str(customer.id),
        "external_id": "222222222",
        "name": "Boris Petrov",
        "username": "boris_p",
        "avatar": f"http://gateway.test/api/v1/customers/{customer.id}/avatar/",
    }
    assert item["last_message"]["direction"] == "incoming"
    assert item["read_sync"] == {"status": "accepted", "reason": None}
    assert item["last_message_at"].endswith("Z")


async def test_list_items_are_the_deal_detail_without_its_messages(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]], sessions: Any
) -> None:
    # The list writes its JSON itself; the detail goes through the `DealOut` model.
    pictured = await seed.customer(avatar_url="https://example.com/a.jpg")
    stored = await seed.customer(avatar_key="avatars/x.jpg", username=None)
    blank = await seed.customer(avatar_key="", avatar_url="")
    deals = [
        await seed.deal(customer=pictured, read_sync_status="refused", read_sync_reason="gone"),
        await seed.deal(customer=stored, read_up_to="7", unread_count=3, total_messages=9),
        await seed.deal(customer=blank, at=datetime(2026, 1, 1, 1, 2, 3, 4000, tzinfo=UTC)),
        await seed.deal(source="external", business_connection_id=None, chat_id=None),
        await seed.deal(),
        await seed.deal(last_message_at=None, last_message_id=None),
    ]
    previews = [
        {"text": "x" * 250, "direction": "outgoing", "date": "2026-01-01T01:00:00.5+03:00"},
        {"text": None, "date": None},
        {},
    ]
    async with sessions() as session, session.begin():
        for deal, preview in zip(deals, previews, strict=False):
            await session.execute(
                text("UPDATE deal SET last_message = :preview WHERE id = :id"),
                {"preview": json.dumps(preview), "id": deal.id},
            )
        await session.execute(
            text("UPDATE deal SET last_message = NULL WHERE id = :id"), {"id": deals[-1].id}
        )

    listed = (await client.get("/api/v1/deals/", headers=auth())).json()["results"]

    assert len(listed) == len(deals)
    for item in listed:
        detail = (await client.get(f"/api/v1/deals/{item['id']}/", headers=auth())).json()
        del detail["messages"], detail["messages_next"]
        assert item == detail


async def test_unsynced_deals_are_not_listed(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    await seed.deal(synced=False)

    body = (await client.get("/api/v1/deals/", headers=auth())).json()

    assert body == {"next": None, "previous": None, "results": []}


async def test_users_see_only_their_own_deals_and_admins_all(
    client: httpx.AsyncClient,
    seed: Any,
    auth: Callable[..., dict[str, str]],
    admin: dict[str, str],
) -> None:
    mine = await seed.deal(owner="111111111")
    theirs = await seed.deal(owner="222222222")
    ownerless = await seed.deal(owner=None)

    own = (await client.get("/api/v1/deals/", headers=auth("111111111"))).json()
    everything = (await client.get("/api/v1/deals/", headers=admin)).json()

    assert [d["id"] for d in own["results"]] == [str(mine.id)]
    assert {d["id"] for d in everything["results"]} == {
        str(mine.id),
        str(theirs.id),
        str(ownerless.id),
    }


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "cursor=not-a-cursor",
        "source=whatsapp",
        "updated_since=yesterday",
        "updated_since=2026-01-01T00:00:00",
        "unread=maybe",
        "business_connection_id=a%00b",
    ],
)
async def test_bad_list_input_is_a_422_problem_naming_the_field(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], query: str
) -> None:
    answer = await client.get(f"/api/v1/deals/?{query}", headers=auth())

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "https://chat-sync.example/problems/validation-error"
    assert problem["errors"][0]["field"] == query.split("=")[0]


async def test_cursor_of_another_walk_is_refused(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    for i in range(3):
        await seed.deal(at=T0 + timedelta(minutes=i))
    first = (await client.get("/api/v1/deals/?limit=1", headers=auth())).json()
    cursor = parse_qs(urlsplit(first["next"]).query)["cursor"][0]

    answer = await client.get(
        f"/api/v1/deals/?cursor={cursor}&updated_since=2020-01-01", headers=auth()
    )

    assert answer.status_code == 422


async def test_both_slash_forms_answer_without_redirect(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    deal = await seed.deal()

    paths = [
        "/api/v1/deals",
        "/api/v1/deals/",
        f"/api/v1/deals/{deal.id}",
        f"/api/v1/deals/{deal.id}/",
    ]
    answers = [await client.get(path, headers=auth()) for path in paths]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 200]


async def test_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    answer = await client.get(f"/api/v1/nothing/{uuid.uuid4()}/")

    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


async def test_deals_whose_messages_were_all_deleted_come_last_and_walk_both_ways(
    client: httpx.AsyncClient, seed: Any, auth: Callable[..., dict[str, str]]
) -> None:
    active = [await seed.deal(at=T0 + timedelta(minutes=i)) for i in range(4)]
    emptied = [await seed.deal(last_message_at=None) for _ in range(4)]
    expected = [str(d.id) for d in reversed(active)] + sorted(
        (str(d.id) for d in emptied), reverse=True
    )
    pages = []
    url: str | None = "/api/v1/deals/?limit=3"
    while url is not None:
        pages.append((await client.get(url, headers=auth())).json())
        url = pages[-1]["next"]

    back = (await client.get(pages[-1]["previous"], headers=auth())).json()
    front = (await client.get(back["previous"], headers=auth())).json()

    assert [d["id"] for page in pages for d in page["results"]] == expected
    assert back["results"] == pages[1]["results"]
    assert front["results"] == pages[0]["results"]
    assert front["previous"] is None
