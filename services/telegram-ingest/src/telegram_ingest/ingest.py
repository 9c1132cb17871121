"""One update in, at most one event out: the path shared by the webhook and polling.

`handle` returns only once the broker confirmed what it published, or raises `Unavailable`;
an update aiogram cannot parse is parked as `telegram.update.unparsed`, not refused.

The update goes straight to the business Router's handlers (`Router.propagate_event`), not
through a Dispatcher: the Dispatcher's outer middlewares (error capture, user context, a log
line) cost four times the routing itself, about 0.2 ms of every update, and this service
needs none of them.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiogram import Bot, Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import Update
from pydantic import ValidationError

from telegram_ingest.handlers import business_router, park
from telegram_ingest.metrics import UPDATES_IGNORED, UPDATES_RECEIVED
from telegram_ingest.owners import Owners
from telegram_ingest.publishing import Publisher

Outcome = Literal["published", "parked", "ignored"]

# The update types Telegram sends today; anything else is counted as "unknown" so a client
# cannot blow up the label set.
UPDATE_TYPES: Final = frozenset(name for name in Update.model_fields if name != "update_id")
# The ones we map; `setWebhook` and `getUpdates` ask Telegram for exactly these.
BUSINESS_UPDATES: Final = (
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
)

# Real updates nest a dozen levels; far deeper cannot be re-serialised into an event
# (pydantic stops at a few hundred) and would turn into a 503 Telegram retries for a day.
MAX_DEPTH: Final = 64

# aiogram logs a line per update at INFO: noise and CPU at hundreds of updates a second.
logging.getLogger("aiogram.event").setLevel(logging.WARNING)


def update_type(raw: dict[str, Any]) -> str:
    for key, value in raw.items():
        if key in UPDATE_TYPES and value is not None:
            return key
    return "unknown"


def representable(value: object, limit: int = MAX_DEPTH) -> bool:
    """Can be carried in an event: nested at most `limit` deep, every string valid UTF-8.

    JSON's `\\ud800` escapes decode to lone surrogates, which no UTF-8 encoder accepts.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not _utf8(item):
                return False
            continue
        if isinstance(item, dict):
            if not all(_utf8(key) for key in item):
                return False
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Ingest:
    bot: Bot
    owners: Owners
    publisher: Publisher
    router: Router = field(default_factory=business_router)

    async def handle(self, raw: dict[str, Any]) -> Outcome:
        """`raw` is a JSON object with an integer `update_id` (the caller checked)."""
        kind = update_type(raw)
        UPDATES_RECEIVED.labels(type=kind).inc()
        if kind not in BUSINESS_UPDATES:
            UPDATES_IGNORED.labels(type=kind).inc()
            return "ignored"
        update_id = int(raw["update_id"])
        try:
            update = Update.model_validate(raw)
        except (ValidationError, ValueError, TypeError) as error:
            await park(self.publisher, update_id, str(error)[:4000], raw)
            return "parked"
        try:
            result = await self.router.propagate_event(
                kind,
                getattr(update, kind),
                event_update=update,
                owners=self.owners,
                publisher=self.publisher,
                raw_update=raw,
            )
        except ValidationError as error:
            # aiogram took it but the catalogue cannot hold it: keep it for a person rather
            # than have Telegram retry it for a day and drop it.
            await park(self.publisher, update_id, f"mapping: {error}"[:4000], raw)
            return "parked"
        if result is UNHANDLED:
            UPDATES_IGNORED.labels(type=kind).inc()
            return "ignored"
        return "parked" if result == "parked" else "published"
