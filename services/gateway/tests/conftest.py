"""Gateway fixtures: the app under its lifespan, an ASGI client, tokens, seeding, a command tap."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import dynamo, s3
from common.auth import issue_token
from common.bus import COMMANDS
from common.dynamo import to_attributes
from common.ids import telegram_message_key, version_key
from common.models import Customer, Deal, MessageKey
from common.settings import Settings
from common.testing import TEST_JWT_SECRET
from gateway.app import create_app

BASE_URL = "http://gateway.test"


@pytest.fixture(scope="session")
async def storage(settings: Settings) -> None:
    async with dynamo.dynamodb_client(settings) as client:
        await dynamo.ensure_messages_table(client, settings.dynamodb_messages_table)
    async with s3.s3_client(settings) as client:
        await s3.ensure_bucket(client, settings.s3_bucket, settings.aws_region)


@pytest.fixture(scope="session")
async def app(settings: Settings, storage: None, migrated_database: str) -> AsyncIterator[Any]:
    application = create_app(settings, relay_interval=0.2)
    async with LifespanManager(application, startup_timeout=30) as manager:
        yield manager.app


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


OWNER = "111111111"


def _headers(user_id: str = OWNER, *, admin: bool = False) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {issue_token(TEST_JWT_SECRET, user_id, admin=admin, hours=1)}"
    }


@pytest.fixture(scope="session")
def auth() -> Callable[..., dict[str, str]]:
    """`auth(user_id="111111111", admin=False)`: Authorization headers with a fresh token."""
    return _headers


@pytest.fixture(scope="session")
def admin() -> dict[str, str]:
    return _headers("900000001", admin=True)


@pytest.fixture
def fresh(clean_database: None) -> None:
    """An empty database (DynamoDB items are keyed by fresh deal ids instead)."""


@dataclass
class Seeder:
    sessions: async_sessionmaker[AsyncSession]
    dynamo: Any
    table: str

    async def customer(self, **values: Any) -> Customer:
        external_id = values.pop("external_id", str(uuid.uuid4().int % 10**9))
        row = Customer(
            id=values.pop("id", uuid.uuid4()),
            source=values.pop("source", "telegram"),
            external_id=external_id,
            name=values.pop("name", "Boris Petrov"),
            username=values.pop("username", "boris_p"),
            **values,
        )
        async with self.sessions() as session, session.begin():
            session.add(row)
        return row

    async def deal(
        self,
        *,
        owner: str | None = "111111111",
        at: datetime | None = None,
        synced: bool = True,
        customer: Customer | None = None,
        **values: Any,
    ) -> Deal:
        chat_id = values.pop("chat_id", uuid.uuid4().int % 10**9 + 1)
        connection = values.pop("business_connection_id", "conn-a")
        moment = at or datetime.now(UTC)
        row = Deal(
            id=values.pop("id", uuid.uuid4()),
            source=values.pop("source", "telegram"),
            external_id=values.pop("external_id", f"tg:{connection}:{chat_id}"),
            business_connection_id=connection,
            chat_id=chat_id,
            owner_user_id=int(owner) if owner is not None else None,
            customer_id=customer.id if customer is not None else None,
            last_message_id=values.pop("last_message_id", "1"),
            last_message_at=values.pop("last_message_at", moment),
            last_message={"text": "Hi!", "direction": "incoming", "date": moment.isoformat()},
            total_messages=values.pop("total_messages", 1),
            unread_count=values.pop("unread_count", 0),
            synced_at=moment if synced else None,
            sync_status="complete" if synced else "partial",
            **values,
        )
        async with self.sessions() as session, session.begin():
            session.add(row)
        return row

    async def message(
        self, deal: Deal, message_id: int, *, text: str = "hello", **attributes: Any
    ) -> dict[str, Any]:
        sort_key = telegram_message_key(message_id)
        date = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=message_id)
        item = {
            "deal_id": str(deal.id),
            "sk": sort_key,
            "message_id": str(message_id),
            "chat_id": str(deal.chat_id),
            "business_connection_id": deal.business_connection_id,
            "direction": "incoming",
            "sent_by": "customer",
            "sender": {"id": str(deal.chat_id), "name": "Boris Petrov"},
            "date": date.isoformat().replace("+00:00", "Z"),
            "source": "live",
            "text": text,
            "entities": [],
            "edit_ts": 0,
            **attributes,
        }
        await self.dynamo.put_item(TableName=self.table, Item=to_attributes(item))
        async with self.sessions() as session, session.begin():
            session.add(
                MessageKey(
                    deal_id=deal.id,
                    message_id=str(message_id),
                    sort_key=sort_key,
                    direction="incoming",
                    source="live",
                )
            )
        return item

    async def version(self, item: dict[str, Any], edit_ts: int, text: str) -> None:
        edit_date = datetime.fromtimestamp(edit_ts, UTC).isoformat().replace("+00:00", "Z")
        version = {
            "deal_id": item["deal_id"],
            "sk": version_key(item["sk"], edit_ts),
            "text": text,
            "edit_date": edit_date,
            "edit_ts": edit_ts,
        }
        await self.dynamo.put_item(TableName=self.table, Item=to_attributes(version))


@pytest.fixture(scope="session")
async def dynamo_client(settings: Settings, storage: None) -> AsyncIterator[Any]:
    async with dynamo.dynamodb_client(settings) as client:
        yield client


@pytest.fixture(scope="session")
async def s3_test_client(settings: Settings, storage: None) -> AsyncIterator[Any]:
    async with s3.s3_client(settings) as client:
        yield client


@pytest.fixture(scope="session")
def seed(
    sessions: async_sessionmaker[AsyncSession], dynamo_client: Any, settings: Settings
) -> Seeder:
    return Seeder(sessions, dynamo_client, settings.dynamodb_messages_table)


Incoming = aio_pika.abc.AbstractIncomingMessage


@pytest.fixture
async def commands(settings: Settings, app: Any) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """A queue bound to the commands exchange (all routing keys); call it to read what came."""
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    channel = await connection.channel()
    exchange = await channel.get_exchange(COMMANDS.name)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")

    async def received(
        count: int = 1, timeout: float = 10
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        messages: list[aio_pika.abc.AbstractIncomingMessage] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(messages) < count and asyncio.get_running_loop().time() < deadline:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            messages.append(message)
        return messages

    yield received
    await connection.close()
