"""`telegram-ingest poll`: getUpdates instead of a webhook, through the same `Ingest` path.

The offset moves past an update only after its event was confirmed, so a crash or a broker
outage repeats updates (consumers drop repeats by content key) and never skips one.
"""

import asyncio
import contextlib
from typing import Any

import structlog

from telegram_ingest.ingest import BUSINESS_UPDATES, Ingest, representable
from telegram_ingest.publishing import Unavailable
from telegram_ingest.telegram import GetRawUpdates, delete_webhook

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 30.0


async def _fetch(
    ingest: Ingest, stop: asyncio.Event, offset: int | None, long_poll_seconds: int
) -> list[dict[str, Any]] | None:
    """The next batch, or None once `stop` is set (a long poll is abandoned, not awaited)."""
    request = GetRawUpdates(
        offset=offset, timeout=long_poll_seconds, allowed_updates=list(BUSINESS_UPDATES)
    )
    fetch = asyncio.ensure_future(ingest.bot(request, request_timeout=long_poll_seconds + 10))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not fetch.done():
        fetch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetch
        return None
    return fetch.result()


async def poll(
    ingest: Ingest,
    stop: asyncio.Event,
    *,
    long_poll_seconds: int = 30,
    backoff_seconds: float = 1.0,
) -> int | None:
    """Run until `stop` is set; returns the offset reached (the next update id wanted)."""
    webhook_deleted = False
    offset: int | None = None
    delay = backoff_seconds
    while not stop.is_set():
        try:
            if not webhook_deleted:
                # getUpdates is refused while a webhook is set.
                await delete_webhook(ingest.bot)
                webhook_deleted = True
            updates = await _fetch(ingest, stop, offset, long_poll_seconds)
            if updates is None:
                break
            for raw in updates:
                update_id = raw.get("update_id")
                if type(update_id) is not int or (offset is not None and update_id < offset):
                    continue
                if representable(raw):
                    await ingest.handle(raw)
                else:
                    # The webhook answers these 400; here, skipping is the same outcome.
                    log.warning("unrepresentable update skipped", update_id=update_id)
                offset = update_id + 1
            delay = backoff_seconds
            continue
        except Unavailable as error:
            # Keep the offset: the same update is fetched again once the dependency is back.
            log.warning("update not confirmed, retrying", reason=error.reason, offset=offset)
        except Exception as error:
            log.warning("polling step failed", error=f"{type(error).__name__}: {error}"[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, MAX_BACKOFF_SECONDS)
    return offset
