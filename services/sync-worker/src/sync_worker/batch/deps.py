"""What the batch sync's steps share: their resources, the notices sent beside the import,
and the shapes handed from one step to the next."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import Event
from sync_worker.batch.client import Chat, ExternalApi, Message, MessagePage

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

log = structlog.get_logger(__name__)

Publish = Callable[[Event], Awaitable[None]]
# The run columns that move its checkpoint past a chat, given the checkpoint expression so
# far; written by the transaction that finishes the chat.
Advance = Callable[[Any], dict[str, Any]]


class Notices:
    """Realtime notifications sent beside the import instead of in its path; best effort,
    since the state they announce is committed and readable anyway."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._sending: set[asyncio.Task[None]] = set()

    def send(self, event: Event) -> None:
        task = asyncio.create_task(self._send(event))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def flush(self) -> None:
        await asyncio.gather(*self._sending)

    async def _send(self, event: Event) -> None:
        try:
            await self._publish(event)
        except Exception as error:
            log.warning("event not published", type=getattr(event, "type", "?"), error=repr(error))


@dataclass(frozen=True)
class Deps:
    sessions: async_sessionmaker[AsyncSession]
    dynamo: "DynamoDBClient"
    table: str
    api: ExternalApi
    publish: Publish
    page_size: int = 20
    message_page_size: int = 100
    notices: Notices = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "notices", Notices(self.publish))


@dataclass(frozen=True)
class ImportedCustomer:
    id: uuid.UUID
    external_id: str
    name: str
    avatar_url: str | None


@dataclass(frozen=True)
class Prepared:
    """What can be done for a chat ahead of its turn, since it is idempotent: the customer,
    the first message page fetched and its items written to DynamoDB."""

    customer: ImportedCustomer
    stop_key: str | None
    page: MessagePage
    wanted: list[Message]
    done: bool


@dataclass(frozen=True)
class Ready:
    """A chat whose whole import came in its first page: it commits in a group."""

    chat: Chat
    prepared: Prepared
    progress: dict[str, Any]
