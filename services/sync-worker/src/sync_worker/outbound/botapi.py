"""A small Bot API client over httpx: every call goes to `TELEGRAM_API_URL`, paced, retried.

- 429: wait Telegram's `retry_after` (and hold the whole bot's pace that long), then retry.
- 5xx and network errors: retry with exponential backoff, a bounded number of times.
- 400, 403 and every other refusal: final, raised as `TelegramRefused` with Telegram's text.

A call that is not idempotent (`sendMessage`) is retried after a network error only when the
request provably never left (connect errors); otherwise Telegram may have acted on it, and
`OutcomeUnknown` is raised instead of sending it twice.

The token appears only in request URLs; every reason this module produces is redacted, so a
stored reason or a logged error never contains it.
"""

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
from prometheus_client import Counter

from common.logging import redact_text
from sync_worker.outbound.limits import Pace

# Errors after which the request cannot have reached Telegram: always safe to retry.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

TELEGRAM_CALLS = Counter(
    "chat_sync_telegram_calls_total",
    "Bot API requests by method and answer: ok, flood (429), refused, server_error, network.",
    ["method", "answer"],
)


class TelegramError(Exception):
    """A call that did not succeed; `reason` is safe to store and log."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = redact_text(reason)[:1000]
        self.status = status


class TelegramRefused(TelegramError):
    """Telegram answered with a final error (400, 403, 404 ...)."""


class TelegramUnavailable(TelegramError):
    """Telegram kept failing (5xx, 429 beyond patience, network) after every retry."""


class OutcomeUnknown(TelegramError):
    """A non-idempotent call may or may not have been carried out."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff_seconds, self.backoff_seconds * 2.0**attempt)
        return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


class BotApi:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        token: str,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token
        self.policy = policy or RetryPolicy()

    async def call(
        self,
        method: str,
        params: Mapping[str, Any],
        *,
        pace: Pace | None = None,
        chat: str | None = None,
        idempotent: bool = True,
        paced: bool = False,
    ) -> Any:
        """The method's `result`, after pacing and retries; raises a `TelegramError`.

        `paced`: the caller already waited for the first attempt's slot.
        """
        url = f"{self._base}/bot{self._token}/{method}"
        failure = f"{method}: no attempt made"
        for attempt in range(self.policy.attempts):
            if pace is not None and (attempt > 0 or not paced):
                await pace.wait(chat)
            try:
                response = await self._http.post(url, json=dict(params))
            except _NOT_SENT as error:
                TELEGRAM_CALLS.labels(method, "network").inc()
                failure = f"{method}: {type(error).__name__}"
            except httpx.TransportError as error:
                TELEGRAM_CALLS.labels(method, "network").inc()
                if not idempotent:
                    raise OutcomeUnknown(f"{method}: {type(error).__name__}") from None
                failure = f"{method}: {type(error).__name__}"
            else:
                body = _json(response)
                TELEGRAM_CALLS.labels(method, _answer(response.status_code)).inc()
                if response.status_code == 200 and body.get("ok") is True:
                    return body.get("result")
                description = str(body.get("description") or f"HTTP {response.status_code}")
                if response.status_code == 429:
                    wait = float((body.get("parameters") or {}).get("retry_after") or 1)
                    if wait > self.policy.max_retry_after_seconds:
                        raise TelegramUnavailable(description, status=429)
                    if pace is not None:
                        pace.hold(wait)
                    await asyncio.sleep(wait)
                    continue
                if response.status_code < 500:
                    raise TelegramRefused(description, status=response.status_code)
                failure = description
            if attempt + 1 < self.policy.attempts:
                await asyncio.sleep(self.policy.delay(attempt))
        raise TelegramUnavailable(failure)

    async def download(self, file_path: str, *, max_bytes: int) -> tuple[bytes, str | None]:
        """A file from `getFile`'s path; raises `FileTooLarge` past `max_bytes`."""
        url = f"{self._base}/file/bot{self._token}/{file_path}"
        failure = "download: no attempt made"
        for attempt in range(self.policy.attempts):
            try:
                async with self._http.stream("GET", url) as response:
                    if response.status_code == 200:
                        body = await read_capped(response, max_bytes)
                        return body, response.headers.get("content-type")
                    failure = f"download: HTTP {response.status_code}"
                    if response.status_code < 500 and response.status_code != 429:
                        raise TelegramRefused(failure, status=response.status_code)
            except httpx.TransportError as error:
                failure = f"download: {type(error).__name__}"
            if attempt + 1 < self.policy.attempts:
                await asyncio.sleep(self.policy.delay(attempt))
        raise TelegramUnavailable(failure)


class FileTooLarge(Exception):
    pass


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise FileTooLarge(f"{declared} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FileTooLarge(f"more than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int) -> str:
    if status == 200:
        return "ok"
    if status == 429:
        return "flood"
    return "server_error" if status >= 500 else "refused"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
