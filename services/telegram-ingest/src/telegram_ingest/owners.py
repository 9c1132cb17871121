"""Who owns a business connection: remembered from connection updates, else asked once.

The map is bounded (least recently used out first); a forgotten connection costs one
`getBusinessConnection` call, after which it is cached again.
"""

import asyncio
from collections import OrderedDict

import structlog
from aiogram import Bot

from telegram_ingest.metrics import OWNER_LOOKUPS
from telegram_ingest.publishing import Unavailable

log = structlog.get_logger(__name__)

LOOKUP_TIMEOUT_SECONDS = 5


class Owners:
    def __init__(self, bot: Bot, *, max_size: int = 100_000) -> None:
        self.bot = bot
        self.max_size = max_size
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._lookups: dict[str, asyncio.Future[str]] = {}

    def remember(self, connection_id: str, owner_user_id: int | str) -> None:
        self._owners[connection_id] = str(owner_user_id)
        self._owners.move_to_end(connection_id)
        while len(self._owners) > self.max_size:
            self._owners.popitem(last=False)

    def known(self, connection_id: str) -> str | None:
        owner = self._owners.get(connection_id)
        if owner is not None:
            self._owners.move_to_end(connection_id)
        return owner

    async def owner_of(self, connection_id: str) -> str:
        """The owner's user id; `Unavailable` when Telegram cannot tell us right now."""
        if (owner := self.known(connection_id)) is not None:
            return owner
        # Concurrent updates of one new connection share a single lookup; shielded, so a
        # request that goes away does not cancel it for the others.
        lookup = self._lookups.get(connection_id)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(connection_id))
            self._lookups[connection_id] = lookup
            lookup.add_done_callback(lambda _done: self._lookups.pop(connection_id, None))
        return await asyncio.shield(lookup)

    async def _look_up(self, connection_id: str) -> str:
        try:
            connection = await self.bot.get_business_connection(
                connection_id, request_timeout=LOOKUP_TIMEOUT_SECONDS
            )
        except Exception as error:
            OWNER_LOOKUPS.labels(result="failed").inc()
            log.warning(
                "getBusinessConnection failed",
                business_connection_id=connection_id,
                error=f"{type(error).__name__}: {error}"[:300],
            )
            raise Unavailable("owner_lookup") from error
        OWNER_LOOKUPS.labels(result="found").inc()
        self.remember(connection_id, connection.user.id)
        return str(connection.user.id)
