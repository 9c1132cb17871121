"""Genuine Telegram Business update JSON (the shapes of ../shared/telegram-samples/) and a
small fake Bot API on loopback, so no benchmark ever reaches api.telegram.org.
"""

import itertools
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bench.harness import LOOPBACK
from bench.infra import WEBHOOK_SECRET, free_port
from common.events import MessageReceived, TelegramChat, TelegramMessage, TelegramUser

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEADERS = {"Content-Type": "application/json", SECRET_HEADER: WEBHOOK_SECRET}
BASE_DATE = 1_767_225_600  # 2026-01-01T00:00:00Z


def connection_id(owner: int, run: str = "0") -> str:
    return f"BenchConn{owner}-{run}-business-connection"


def owner_user(owner: int) -> dict[str, Any]:
    return {
        "id": owner,
        "is_bot": False,
        "first_name": "Owner",
        "last_name": str(owner),
        "username": f"owner_{owner}",
        "language_code": "en",
    }


def business_connection(
    update_id: int, owner: int, *, connection: str | None = None
) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "business_connection": {
            "id": connection or connection_id(owner),
            "user": owner_user(owner),
            "user_chat_id": owner,
            "date": BASE_DATE,
            "rights": {
                "can_reply": True,
                "can_read_messages": True,
                "can_delete_sent_messages": True,
            },
            "is_enabled": True,
        },
    }


def business_message(
    update_id: int,
    owner: int,
    chat_id: int,
    message_id: int,
    text: str,
    *,
    connection: str | None = None,
) -> dict[str, Any]:
    """An incoming text message from customer `chat_id`, as Telegram POSTs it."""
    customer = {
        "id": chat_id,
        "is_bot": False,
        "first_name": "Customer",
        "last_name": str(chat_id),
        "username": f"customer_{chat_id}",
        "language_code": "ru",
    }
    return {
        "update_id": update_id,
        "business_message": {
            "message_id": message_id,
            "from": customer,
            "chat": {
                "id": chat_id,
                "first_name": "Customer",
                "last_name": str(chat_id),
                "username": f"customer_{chat_id}",
                "type": "private",
            },
            "date": BASE_DATE + message_id,
            "business_connection_id": connection or connection_id(owner),
            "text": f"{text} Is order #42 ready? Details: https://example.com/o/42",
            "entities": [{"offset": len(text) + 30, "length": 24, "type": "url"}],
        },
    }


def body(update: dict[str, Any]) -> bytes:
    return json.dumps(update, separators=(",", ":")).encode()


class Updates:
    """Unique update ids and per-chat increasing message ids, for one run.

    Each run has business connections of its own: the benchmark database is kept between
    runs, and a message id of a connection and chat seen before is (rightly) a duplicate to
    the sync-worker, which would then measure its duplicate path instead of new messages.
    """

    def __init__(self, start: int = 100_000_000) -> None:
        self._update_ids = itertools.count(start)
        self._message_ids: dict[tuple[int, int], int] = {}
        self.run = uuid.uuid4().hex[:8]

    def next_id(self) -> int:
        return next(self._update_ids)

    def connection(self, owner: int) -> bytes:
        connection = connection_id(owner, self.run)
        return body(business_connection(next(self._update_ids), owner, connection=connection))

    def message(self, owner: int, chat_id: int, text: str) -> bytes:
        key = (owner, chat_id)
        self._message_ids[key] = self._message_ids.get(key, 0) + 1
        update = business_message(
            next(self._update_ids), owner, chat_id, self._message_ids[key], text,
            connection=connection_id(owner, self.run),
        )  # fmt: skip
        return body(update)


@asynccontextmanager
async def fake_bot_api() -> AsyncIterator[str]:
    """`POST /bot<token>/<method>`: enough of the Bot API for ingest and the avatar worker."""

    async def call(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        result: Any = True
        if method == "getBusinessConnection":
            data = await request.post()
            raw_id = str(data.get("business_connection_id", "BenchConn1-x"))
            owner = int(raw_id.removeprefix("BenchConn").split("-", 1)[0] or 1)
            result = business_connection(0, owner, connection=raw_id)["business_connection"]
        elif method == "getUserProfilePhotos":
            result = {"total_count": 0, "photos": []}
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", call)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, LOOPBACK, port)
    await site.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        await runner.cleanup()


def message_event(update: dict[str, Any], owner: int) -> MessageReceived:
    """The `telegram.message.received` event telegram-ingest makes of a `business_message`."""
    raw = update["business_message"]
    sender = raw["from"]
    message = TelegramMessage(
        message_id=raw["message_id"],
        chat=TelegramChat(**raw["chat"]),
        sender=TelegramUser(
            id=sender["id"],
            first_name=sender["first_name"],
            last_name=sender.get("last_name"),
            username=sender.get("username"),
        ),
        date=datetime.fromtimestamp(raw["date"], UTC),
        text=raw.get("text"),
        entities=raw.get("entities", []),
    )
    return MessageReceived(
        owner_user_id=owner,
        update_id=update["update_id"],
        business_connection_id=raw["business_connection_id"],
        chat_id=raw["chat"]["id"],
        message_id=raw["message_id"],
        message=message,
        raw_update=update,
    )
