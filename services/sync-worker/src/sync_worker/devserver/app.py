"""The dev server's HTTP surface, following the external chat API contract."""

import asyncio
import base64
import hmac
import random
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_worker.devserver.data import Dataset

# A 1x1 PNG: enough for the avatar worker to store something real.
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dataclass
class Faults:
    latency_ms: int = 0
    failure_rate: float = 0.0  # share of calls answered 500
    rate_limit_rate: float = 0.0  # share of calls answered 429 with Retry-After
    retry_after_seconds: int = 1
    seed: int = 1


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        offset = int(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return offset if kind == "o" and offset >= 0 else None


def _limit(request: Request, default: int) -> int | None:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        return None
    return int(raw)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _page(items: list[Any], request: Request, default_limit: int) -> Response:
    offset = _decode_cursor(request.query_params.get("cursor"))
    limit = _limit(request, default_limit)
    if offset is None or limit is None:
        return _error(400, "bad cursor or limit")
    chunk = items[offset : offset + limit]
    more = offset + limit < len(items)
    return JSONResponse(
        {"items": chunk, "next_cursor": _encode_cursor(offset + limit) if more else None}
    )


def build_app(dataset: Dataset, *, token: str | None, faults: Faults | None = None) -> Starlette:
    faults = faults or Faults()
    rng = random.Random(faults.seed)  # noqa: S311 - fault injection, not security

    async def guard(request: Request) -> Response | None:
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if token is not None:
            supplied = request.headers.get("authorization", "")
            if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
                return _error(401, "invalid token")
        if faults.rate_limit_rate and rng.random() < faults.rate_limit_rate:
            headers = {"Retry-After": str(faults.retry_after_seconds)}
            return _error(429, "slow down", headers)
        if faults.failure_rate and rng.random() < faults.failure_rate:
            return _error(500, "injected failure")
        return None

    async def list_chats(request: Request) -> Response:
        if (refused := await guard(request)) is not None:
            return refused
        return _page([chat.as_json() for chat in dataset.chats], request, 20)

    async def list_messages(request: Request) -> Response:
        if (refused := await guard(request)) is not None:
            return refused
        chat_id = request.path_params["chat_id"]
        chat = next((chat for chat in dataset.chats if chat.id == chat_id), None)
        if chat is None:
            return _error(404, "no such chat")
        return _page(chat.messages, request, 50)

    async def get_customer(request: Request) -> Response:
        if (refused := await guard(request)) is not None:
            return refused
        customer = dataset.customers.get(request.path_params["customer_id"])
        if customer is None:
            return _error(404, "no such customer")
        return JSONResponse(customer)

    async def avatar(_request: Request) -> Response:
        return Response(_PNG, media_type="image/png")

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/api/v1/chats", list_chats),
            Route("/api/v1/chats/{chat_id}/messages", list_messages),
            Route("/api/v1/customers/{customer_id}", get_customer),
            Route("/avatars/{name}", avatar),
            Route("/healthz", healthz),
        ]
    )
