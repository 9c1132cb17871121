"""Pacing of outbound Telegram calls: about 1 per second per chat and 30 per second per bot.

Each pace is a virtual schedule (GCRA): a call reserves the next free slot of its chat and of
the bot and sleeps until then, so calls queue instead of failing. The schedule lives in the
one process that consumes an outbound queue: both outbound queues are single-active-consumer
queues (see `sync_worker.outbound.subscribers`), so however many workers run, one of them
sends at a time per queue, and each queue gets its share of the bot's budget.
"""

import asyncio
import time
from typing import Final

# Chats idle this long are forgotten, so the schedule does not grow without bound.
_FORGET_AFTER_SECONDS: Final = 60.0


class Pace:
    def __init__(self, *, chat_rate: float, bot_rate: float) -> None:
        self._chat_interval = 1.0 / chat_rate
        self._bot_interval = 1.0 / bot_rate
        self._bot_next = 0.0
        self._chat_next: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def reserve(self, chat: str | None, now: float) -> float:
        """Book the next slot for a call to `chat`; returns how long to wait for it."""
        start = now
        if chat is not None:
            start = max(start, self._chat_next.get(chat, 0.0))
        start = max(start, self._bot_next)
        self._bot_next = start + self._bot_interval
        if chat is not None:
            self._chat_next[chat] = start + self._chat_interval
        if len(self._chat_next) > 1000:
            self._forget(now)
        return start - now

    async def wait(self, chat: str | None) -> None:
        async with self._lock:
            delay = self.reserve(chat, time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)

    def hold(self, seconds: float) -> None:
        """Telegram said 429: nothing leaves before `seconds` from now."""
        self._bot_next = max(self._bot_next, time.monotonic() + seconds)

    def _forget(self, now: float) -> None:
        for chat, at in list(self._chat_next.items()):
            if at < now - _FORGET_AFTER_SECONDS:
                del self._chat_next[chat]
