"""`POST /telegram/webhook/`: authenticate, bound, decode, then hand over to `Ingest`.

A 200 means the update's event is durably in RabbitMQ (or parked, or its type is one we
ignore); any other answer makes Telegram retry the update.
"""

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from telegram_ingest.ingest import Ingest, representable
from telegram_ingest.metrics import REQUESTS_REJECTED
from telegram_ingest.publishing import Unavailable

MAX_BODY_BYTES: Final = 1024 * 1024
SECRET_HEADER: Final = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
_UPDATE_ID_LIMIT: Final = 2**63


class _TooLarge(Exception):
    pass


def _reject(status: int, reason: str) -> Response:
    REQUESTS_REJECTED.labels(reason=reason).inc()
    return JSONResponse({"ok": False, "error": reason}, status_code=status)


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant time; an unset secret matches nothing."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    # Content-Length may be absent (chunked) or lie: count what actually arrives.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _TooLarge
    return bytes(body)


def parse_update(body: bytes) -> dict[str, Any] | None:
    """The JSON object with a usable integer `update_id`, or None."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(data, dict) or not representable(data):
        return None
    update_id = data.get("update_id")
    if type(update_id) is not int or not 0 <= update_id < _UPDATE_ID_LIMIT:
        return None
    return data


def webhook_endpoint(
    ingest_of: Callable[[Request], Ingest], secret: str
) -> Callable[[Request], Awaitable[Response]]:
    async def receive_update(request: Request) -> Response:
        if request.method != "POST":
            REQUESTS_REJECTED.labels(reason="method").inc()
            return Response(status_code=405, headers={"Allow": "POST"})
        if not secret_matches(request.headers.get(SECRET_HEADER), secret):
            return _reject(401, "secret")
        try:
            body = await _read_body(request)
        except _TooLarge:
            return _reject(413, "too_large")
        except ClientDisconnect:
            return _reject(400, "disconnected")
        update = parse_update(body)
        if update is None:
            return _reject(400, "malformed")
        try:
            await ingest_of(request).handle(update)
        except Unavailable as error:
            return _reject(503, error.reason)
        return JSONResponse({"ok": True})

    return receive_update
