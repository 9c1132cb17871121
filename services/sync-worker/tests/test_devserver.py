from datetime import UTC, datetime

import httpx
from starlette.applications import Starlette

from sync_worker.devserver.app import Faults, build_app
from sync_worker.devserver.data import generate

TOKEN = "dev-token"


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dev",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


async def test_chat_pages_walk_every_chat_newest_first() -> None:
    app = build_app(generate(chats=23), token=TOKEN)
    seen: list[dict[str, object]] = []

    async with _client(app) as client:
        cursor: str | None = None
        while True:
            params = {"limit": "10"} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/v1/chats", params=params)).json()
            seen.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break

    order = [(c["last_message"]["created_at"], c["id"]) for c in seen]  # type: ignore[index]
    assert len(seen) == 23
    assert order == sorted(order, reverse=True)


async def test_activity_moves_a_chat_to_the_front() -> None:
    dataset = generate(chats=5)
    oldest = dataset.chats[-1].id

    dataset.add_message(oldest, "new!", datetime(2030, 1, 1, tzinfo=UTC))

    assert dataset.chats[0].id == oldest
    assert dataset.chats[0].messages[0]["text"] == "new!"


async def test_wrong_token_is_401_and_faults_are_injected() -> None:
    app = build_app(generate(chats=2), token=TOKEN, faults=Faults(rate_limit_rate=1.0))

    async with _client(app) as client:
        limited = await client.get("/api/v1/chats")
        refused = await client.get("/api/v1/chats", headers={"Authorization": "Bearer nope"})

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert refused.status_code == 401


async def test_bad_cursor_and_unknown_ids_are_errors() -> None:
    app = build_app(generate(chats=2), token=TOKEN)

    async with _client(app) as client:
        bad_cursor = await client.get("/api/v1/chats", params={"cursor": "%%%"})
        bad_limit = await client.get("/api/v1/chats", params={"limit": "0"})
        no_chat = await client.get("/api/v1/chats/nope/messages")
        no_customer = await client.get("/api/v1/customers/nope")

    assert [r.status_code for r in (bad_cursor, bad_limit, no_chat, no_customer)] == [
        400,
        400,
        404,
        404,
    ]
