"""Test support (imported by tests only, like `common.testing`).

A fake Telegram Bot API on 127.0.0.1: a real HTTP server that records every call, answers like
Telegram, can be told to answer 429/400/403/500, serves file downloads at
`/file/bot<token>/<path>` and plain pages (for avatar URLs); and seeding of the rows the live
path writes, in its shape."""

import asyncio
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common.events import Event, utcnow
from common.ids import (
    customer_id_for_telegram,
    deal_id_for_telegram,
    telegram_deal_external_id,
    telegram_message_key,
)
from common.models import BusinessConnection, Customer, Deal, MessageKey
from sync_worker.outbound.botapi import BotApi, RetryPolicy
from sync_worker.outbound.limits import Pace
from sync_worker.outbound.resources import Outbound

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

FAST_RETRIES = RetryPolicy(attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.05)

MAX_DOWNLOAD = 20 * 1024 * 1024
BOT_USER = {"id": 7000000001, "is_bot": True, "first_name": "Shop Sync Bot"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    body: bytes
    content_type: str
    file_path: str
    file_size: int


@dataclass
class Page:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class FakeBotApi:
    def __init__(self, token: str, *, owner_id: int = 111111111) -> None:
        self.token = token
        self.owner_id = owner_id
        self.calls: list[Call] = []
        self.downloads: list[str] = []
        self.page_hits: list[str] = []
        self.photos: dict[str, list[list[dict[str, Any]]]] = {}
        self.files: dict[str, StoredFile] = {}
        self.pages: dict[str, Page] = {}
        self._scripted: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self._delays: dict[str, list[float]] = defaultdict(list)
        self._message_ids = itertools.count(9001)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    # --- scripting ---------------------------------------------------------------------

    def fail_next(
        self, method: str, status: int, description: str, *, retry_after: int | None = None
    ) -> None:
        """The next call of `method` gets this error instead of the normal answer."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        self._scripted[method].append((status, body))

    def delay_next(self, method: str, seconds: float) -> None:
        """The next call of `method` is carried out, but answered only after `seconds`."""
        self._delays[method].append(seconds)

    def add_file(
        self,
        file_id: str,
        file_unique_id: str,
        body: bytes,
        content_type: str = "image/jpeg",
        *,
        file_size: int | None = None,
    ) -> StoredFile:
        stored = StoredFile(
            file_id=file_id,
            file_unique_id=file_unique_id,
            body=body,
            content_type=content_type,
            file_path=f"files/{file_unique_id}",
            file_size=len(body) if file_size is None else file_size,
        )
        self.files[file_id] = stored
        return stored

    def set_photo(self, user_id: int | str, stored: StoredFile | None) -> None:
        """The user's profile photo (a small and a large size of one file), or none."""
        if stored is None:
            self.photos[str(user_id)] = []
            return
        small = {"file_id": stored.file_id + "-s", "file_unique_id": stored.file_unique_id + "s"}
        large = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        self.photos[str(user_id)] = [
            [{**small, "width": 160, "height": 160}, {**large, "width": 640, "height": 640}]
        ]

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [call.params for call in self.calls if call.method == method]

    # --- server --------------------------------------------------------------------------

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._method, methods=["POST"]),
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
                Route("/{path:path}", self._page, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, lifespan="off", ws="none"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 - uvicorn offers no event
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    async def _method(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return JSONResponse(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
            )
        method = request.path_params["method"]
        params: dict[str, Any] = await request.json()
        self.calls.append(Call(method, params))
        if self._delays[method]:
            await asyncio.sleep(self._delays[method].pop(0))
        if self._scripted[method]:
            status, body = self._scripted[method].pop(0)
            return JSONResponse(body, status)
        handler = getattr(self, f"_on_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result: Any | Response = handler(params)
        if isinstance(result, Response):
            return result
        return JSONResponse({"ok": True, "result": result})

    def _on_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": {"id": self.owner_id, "is_bot": False, "first_name": "Owner"},
            "chat": {"id": params["chat_id"], "type": "private"},
            "date": int(time.time()),
            "business_connection_id": params.get("business_connection_id"),
            "sender_business_bot": BOT_USER,
            "text": params["text"],
        }
        reply = params.get("reply_parameters")
        if reply:
            message["reply_to_message"] = {
                "message_id": reply["message_id"],
                "chat": message["chat"],
                "date": int(time.time()) - 60,
            }
        return message

    def _on_readBusinessMessage(self, _params: dict[str, Any]) -> bool:
        return True

    def _on_getUserProfilePhotos(self, params: dict[str, Any]) -> dict[str, Any]:
        photos = self.photos.get(str(params["user_id"]), [])
        return {"total_count": len(photos), "photos": photos[: int(params.get("limit", 100))]}

    def _on_getFile(self, params: dict[str, Any]) -> dict[str, Any] | Response:
        stored = self.files.get(params["file_id"])
        if stored is None:
            return _error(400, "Bad Request: invalid file_id")
        if stored.file_size > MAX_DOWNLOAD:
            return _error(400, "Bad Request: file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    async def _download(self, request: Request) -> Response:
        path = request.path_params["path"]
        self.downloads.append(path)
        if request.path_params["token"] != self.token:
            return Response(status_code=401)
        for stored in self.files.values():
            if stored.file_path == path:
                return Response(stored.body, media_type=stored.content_type)
        return Response(status_code=404)

    async def _page(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        self.page_hits.append(path)
        page = self.pages.get(path)
        if page is None:
            return Response(status_code=404)
        return Response(page.body, status_code=page.status, headers=page.headers)


def _error(status: int, description: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error_code": status, "description": description}, status)


# --- seeding the live path's rows, in its shape (common.models, common.ids) -----------------

OWNER_ID = 111111111
CHAT_ID = 222222222
ALL_RIGHTS: dict[str, Any] = {"can_reply": True, "can_read_messages": True}


@dataclass(frozen=True)
class SeededDeal:
    id: uuid.UUID
    connection_id: str
    chat_id: int
    owner_id: int


async def seed_deal(
    sessions: async_sessionmaker[AsyncSession],
    *,
    incoming: Sequence[int] = (),
    outgoing: Sequence[int] = (),
    enabled: bool = True,
    rights: dict[str, Any] | None = None,
    chat_id: int = CHAT_ID,
    owner_id: int = OWNER_ID,
) -> SeededDeal:
    """A Telegram deal as the live path leaves it: connection, customer, deal, message keys."""
    connection_id = f"conn-{uuid.uuid4().hex[:12]}"
    deal_id = deal_id_for_telegram(connection_id, chat_id)
    keys = sorted(
        [(message_id, "incoming") for message_id in incoming]
        + [(message_id, "outgoing") for message_id in outgoing]
    )
    newest_outgoing = max(outgoing, default=None)
    horizon = telegram_message_key(newest_outgoing) if newest_outgoing is not None else None
    unread = sum(
        1
        for message_id in incoming
        if horizon is None or telegram_message_key(message_id) > horizon
    )
    async with sessions() as session, session.begin():
        session.add(
            BusinessConnection(
                id=connection_id,
                owner_user_id=owner_id,
                user_chat_id=owner_id,
                is_enabled=enabled,
                rights=ALL_RIGHTS if rights is None else rights,
                status="active" if enabled else "disabled",
            )
        )
        session.add(
            Customer(
                id=customer_id_for_telegram(chat_id),
                source="telegram",
                external_id=str(chat_id),
                name="Boris Petrov",
            )
        )
        await session.flush()
        last = keys[-1][0] if keys else None
        session.add(
            Deal(
                id=deal_id,
                source="telegram",
                external_id=telegram_deal_external_id(connection_id, chat_id),
                business_connection_id=connection_id,
                chat_id=chat_id,
                owner_user_id=owner_id,
                customer_id=customer_id_for_telegram(chat_id),
                total_messages=len(keys),
                unread_count=unread,
                read_up_to=str(newest_outgoing) if newest_outgoing is not None else None,
                read_horizon_key=horizon,
                last_message_id=str(last) if last is not None else None,
                last_message_key=telegram_message_key(last) if last is not None else None,
                synced_at=utcnow() if keys else None,
                sync_status="synced" if keys else "partial",
            )
        )
        await session.flush()
        for message_id, direction in keys:
            session.add(
                MessageKey(
                    deal_id=deal_id,
                    message_id=str(message_id),
                    sort_key=telegram_message_key(message_id),
                    direction=direction,
                    source="live",
                    state="present",
                    deleted=False,
                    sent_at=utcnow(),
                )
            )
    return SeededDeal(deal_id, connection_id, chat_id, owner_id)


@asynccontextmanager
async def fake_outbound(
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    table: str,
    bot: FakeBotApi,
    *,
    chat_rate: float = 100.0,
    bot_rate: float = 1000.0,
    timeout: float = 10.0,
) -> AsyncIterator[tuple[Outbound, list[Event]]]:
    """Outbound resources pointed at the fake Bot API; published events land in the list."""
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    async with httpx.AsyncClient(timeout=timeout) as http:
        yield (
            Outbound(
                sessions=sessions,
                dynamo=dynamo,
                table=table,
                bot=BotApi(http, base_url=bot.url, token=bot.token, policy=FAST_RETRIES),
                publish=publish,
                send_pace=Pace(chat_rate=chat_rate, bot_rate=bot_rate),
                read_pace=Pace(chat_rate=chat_rate, bot_rate=bot_rate),
            ),
            published,
        )
