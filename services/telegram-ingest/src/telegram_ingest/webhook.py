"""`POST /telegram/webhook/`: authenticate, bound, decode, then hand over to `Ingest`.

A 200 means the update's event is durably in RabbitMQ (or parked, or its type is one we
ignore); any other answer makes Telegram retry the update.

A plain ASGI callable rather than a Starlette endpoint: it is the one hot path of this
service, and the Request/Response objects and routing cost as much as the update's own
mapping. Probes and metrics stay on Starlette.
"""

import hmac
import json
import time
from typing import Any, Final

import orjson
from starlette.types import Receive, Scope, Send

from telegram_ingest.ingest import MAX_DEPTH, Ingest, representable
from telegram_ingest.metrics import REQUESTS_REJECTED, WEBHOOK_SECONDS
from telegram_ingest.publishing import Unavailable

MAX_BODY_BYTES: Final = 1024 * 1024
SECRET_HEADER: Final = b"x-telegram-bot-api-secret-token"
_UPDATE_ID_LIMIT: Final = 2**63
_JSON: Final = (b"content-type", b"application/json")
_OK: Final = b'{"ok":true}'


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def secret_matches(given: bytes | None, expected: bytes) -> bool:
    """Constant time; an unset secret matches nothing."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(given, expected)


def parse_update(body: bytes) -> dict[str, Any] | None:
    """The JSON object with a usable integer `update_id`, or None."""
    try:
        data = orjson.loads(body)
        # orjson returns valid UTF-8 only, and nesting needs an opening bracket per level:
        # a body with few of them needs no walk.
        checked = body.count(b"{") + body.count(b"[") <= MAX_DEPTH
    except orjson.JSONDecodeError:
        # orjson refuses what the JSON standard leaves open (integers beyond 64 bits, NaN,
        # lone surrogates); the standard library decides those as it always did.
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
        checked = False
    if not isinstance(data, dict) or not (checked or representable(data)):
        return None
    update_id = data.get("update_id")
    if type(update_id) is not int or not 0 <= update_id < _UPDATE_ID_LIMIT:
        return None
    return data


class WebhookEndpoint:
    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            await self._answer_update(scope, receive, send)
        finally:
            WEBHOOK_SECONDS.observe(time.perf_counter() - started)

    async def _answer_update(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            REQUESTS_REJECTED.labels(reason="method").inc()
            await _answer(send, 405, b"", [(b"allow", b"POST")])
            return
        given: bytes | None = None
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == SECRET_HEADER:
                given = value
            elif name == b"content-length":
                declared = value
        if not secret_matches(given, self.secret):
            await _reject(send, 401, "secret")
            return
        try:
            body = await _read_body(receive, declared)
        except _TooLarge:
            await _reject(send, 413, "too_large")
            return
        except _Disconnected:
            REQUESTS_REJECTED.labels(reason="disconnected").inc()
            return
        update = parse_update(body)
        if update is None:
            await _reject(send, 400, "malformed")
            return
        ingest: Ingest = scope["state"]["ingest"]
        try:
            await ingest.handle(update)
        except Unavailable as error:
            await _reject(send, 503, error.reason)
            return
        await _answer(send, 200, _OK, [_JSON])


async def _read_body(receive: Receive, declared: bytes | None) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    # Content-Length may be absent (chunked) or lie: count what actually arrives.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _reject(send: Send, status: int, reason: str) -> None:
    REQUESTS_REJECTED.labels(reason=reason).inc()
    await _answer(send, status, orjson.dumps({"ok": False, "error": reason}), [_JSON])


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})
