"""Customer avatars against the fake Bot API over real HTTP, real PostgreSQL and local S3."""

import ipaddress
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.dynamo import dynamodb_client
from common.events import CustomerImported, CustomerUpdated, Event, utcnow
from common.ids import customer_id_for_external, customer_id_for_telegram
from common.models import Customer
from common.settings import Settings
from sync_worker.avatars.customers import refresh_external, refresh_telegram
from sync_worker.avatars.fetch import is_public
from sync_worker.avatars.resources import Avatars
from sync_worker.avatars.testing import fake_avatars
from sync_worker.outbound.testing import FakeBotApi, Page

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client

JPEG = b"\xff\xd8\xff\xe0" + b"avatar" * 100
PNG = b"\x89PNG\r\n\x1a\n" + b"png" * 100


@pytest.fixture(scope="session")
async def dynamo(settings: Settings) -> AsyncIterator["DynamoDBClient"]:
    async with dynamodb_client(settings) as client:
        yield client


@pytest.fixture
async def avatars(
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    s3: "S3Client",
    settings: Settings,
    bot: FakeBotApi,
    clean_database: None,
) -> AsyncIterator[tuple[Avatars, list[Event]]]:
    port = bot.url.rsplit(":", 1)[1]
    async with fake_avatars(
        sessions,
        dynamo,
        settings.dynamodb_messages_table,
        s3,
        settings.s3_bucket,
        bot,
        allowlist=[f"127.0.0.1:{port}"],
    ) as pair:
        yield pair


async def _customer(sessions: async_sessionmaker[AsyncSession], customer_id: uuid.UUID) -> Customer:
    async with sessions() as session:
        row = await session.get(Customer, customer_id)
    assert row is not None
    return row


def _user_id() -> str:
    return str(uuid.uuid4().int % 10**9 + 10**9)


async def test_telegram_photo_is_copied_to_s3_and_recorded_on_a_new_customer(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
    s3: "S3Client",
    settings: Settings,
) -> None:
    worker, published = avatars
    user_id = _user_id()
    bot.set_photo(user_id, bot.add_file(f"photo-{user_id}", f"U{user_id}", JPEG))

    await refresh_telegram(worker, user_id, ["111111111"])

    customer_id = customer_id_for_telegram(user_id)
    key = f"avatars/{customer_id}/U{user_id}.jpg"
    stored = await s3.get_object(Bucket=settings.s3_bucket, Key=key)
    assert await stored["Body"].read() == JPEG
    assert stored["ContentType"] == "image/jpeg"
    customer = await _customer(sessions, customer_id)
    assert (customer.source, customer.external_id) == ("telegram", user_id)
    assert (customer.avatar_key, customer.avatar_file_unique_id) == (key, f"U{user_id}")
    assert customer.avatar_checked_at is not None
    assert bot.calls_to("getUserProfilePhotos") == [{"user_id": int(user_id), "limit": 1}]
    assert bot.calls_to("getFile") == [{"file_id": f"photo-{user_id}"}]  # the largest size
    assert published == [
        CustomerUpdated(
            event_id=published[0].event_id,
            occurred_at=published[0].occurred_at,
            customer_id=customer_id,
            avatar_key=key,
            owner_user_ids=["111111111"],
            external_id=user_id,
            name=customer.name,
            username=customer.username,
        )
    ]


async def test_two_customers_with_the_same_photo_upload_it_once(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = avatars
    first, second = _user_id(), _user_id()
    shared = bot.add_file("photo-shared", f"S{first}", JPEG)
    bot.set_photo(first, shared)
    bot.set_photo(second, shared)

    await refresh_telegram(worker, first, ["111111111"])
    await refresh_telegram(worker, second, ["111111111"])

    assert len(bot.downloads) == 1
    one = await _customer(sessions, customer_id_for_telegram(first))
    two = await _customer(sessions, customer_id_for_telegram(second))
    assert one.avatar_key is not None
    assert two.avatar_key == one.avatar_key


async def test_no_photo_is_not_refetched_within_the_ttl_but_is_after_it(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = avatars
    user_id = _user_id()
    bot.set_photo(user_id, None)
    await refresh_telegram(worker, user_id, ["111111111"])
    await refresh_telegram(worker, user_id, ["111111111"])
    calls_within_ttl = len(bot.calls_to("getUserProfilePhotos"))
    async with sessions() as session, session.begin():
        await session.execute(
            update(Customer)
            .where(Customer.id == customer_id_for_telegram(user_id))
            .values(avatar_checked_at=Customer.avatar_checked_at - timedelta(hours=25))
        )
    worker.settled.forget(customer_id_for_telegram(user_id))  # 25 hours would have expired it
    bot.set_photo(user_id, bot.add_file(f"late-{user_id}", f"L{user_id}", JPEG))

    await refresh_telegram(worker, user_id, ["111111111"])

    assert calls_within_ttl == 1
    assert len(bot.calls_to("getUserProfilePhotos")) == 2
    customer = await _customer(sessions, customer_id_for_telegram(user_id))
    assert customer.avatar_file_unique_id == f"L{user_id}"
    assert [type(event) for event in published] == [CustomerUpdated]


async def test_a_retry_asks_postgresql_where_a_first_delivery_trusts_what_was_remembered(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Another worker holds the check (a claim just taken), then its Bot API call fails and it
    # releases the claim; its delivery comes back through a retry tier, to this worker.
    worker, _ = avatars
    user_id = _user_id()
    customer_id = customer_id_for_telegram(user_id)
    bot.set_photo(user_id, bot.add_file(f"r-{user_id}", f"R{user_id}", JPEG))
    async with sessions() as session, session.begin():
        session.add(
            Customer(
                id=customer_id,
                source="telegram",
                external_id=user_id,
                name="",
                avatar_checked_at=utcnow(),
            )
        )
    await refresh_telegram(worker, user_id, ["111111111"])
    async with sessions() as session, session.begin():
        await session.execute(
            update(Customer).where(Customer.id == customer_id).values(avatar_checked_at=None)
        )

    await refresh_telegram(worker, user_id, ["111111111"])
    calls_before_the_retry = len(bot.calls_to("getUserProfilePhotos"))
    await refresh_telegram(worker, user_id, ["111111111"], retry=True)

    assert calls_before_the_retry == 0
    assert len(bot.calls_to("getUserProfilePhotos")) == 1
    customer = await _customer(sessions, customer_id)
    assert customer.avatar_file_unique_id == f"R{user_id}"


async def test_a_check_this_worker_finished_answers_the_next_event_without_postgresql(
    avatars: tuple[Avatars, list[Event]], bot: FakeBotApi, engine: AsyncEngine
) -> None:
    worker, _ = avatars
    user_id = _user_id()
    bot.set_photo(user_id, None)
    await refresh_telegram(worker, user_id, ["111111111"])
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await refresh_telegram(worker, user_id, ["111111111"])
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)

    assert statements == []
    assert len(bot.calls_to("getUserProfilePhotos")) == 1


async def test_unchanged_photo_after_the_ttl_is_not_uploaded_again(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = avatars
    user_id = _user_id()
    bot.set_photo(user_id, bot.add_file(f"same-{user_id}", f"K{user_id}", JPEG))
    await refresh_telegram(worker, user_id, ["111111111"])
    async with sessions() as session, session.begin():
        await session.execute(
            update(Customer)
            .where(Customer.id == customer_id_for_telegram(user_id))
            .values(avatar_checked_at=Customer.avatar_checked_at - timedelta(hours=25))
        )
    worker.settled.forget(customer_id_for_telegram(user_id))  # 25 hours would have expired it

    await refresh_telegram(worker, user_id, ["111111111"])

    assert len(bot.calls_to("getUserProfilePhotos")) == 2
    assert len(bot.downloads) == 1
    assert len(published) == 1
    customer = await _customer(sessions, customer_id_for_telegram(user_id))
    assert customer.avatar_checked_at is not None
    assert customer.avatar_checked_at > utcnow() - timedelta(minutes=1)


async def _imported(
    sessions: async_sessionmaker[AsyncSession], avatar_url: str
) -> CustomerImported:
    upstream = uuid.uuid4().hex
    customer_id = customer_id_for_external(upstream)
    async with sessions() as session, session.begin():
        session.add(
            Customer(
                id=customer_id,
                source="external",
                external_id=upstream,
                name="Imported",
                avatar_url=avatar_url,
            )
        )
    return CustomerImported(customer_id=customer_id, external_id=upstream, avatar_url=avatar_url)


async def test_external_avatar_from_an_allowlisted_server_is_stored(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
    s3: "S3Client",
    settings: Settings,
) -> None:
    worker, published = avatars
    bot.pages["/avatars/moved.png"] = Page(302, headers={"Location": "/avatars/a.png"})
    bot.pages["/avatars/a.png"] = Page(200, PNG, {"Content-Type": "image/png"})
    event = await _imported(sessions, f"{bot.url}/avatars/moved.png")

    await refresh_external(worker, event)

    customer = await _customer(sessions, event.customer_id)
    assert customer.avatar_key is not None
    assert customer.avatar_key.startswith(f"avatars/{event.customer_id}/")
    assert customer.avatar_key.endswith(".png")
    stored = await s3.get_object(Bucket=settings.s3_bucket, Key=customer.avatar_key)
    assert (await stored["Body"].read(), stored["ContentType"]) == (PNG, "image/png")
    assert [type(event) for event in published] == [CustomerUpdated]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/avatars/a.png",
        "http://localhost:{port}/avatars/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/avatars/a.png",
        "file:///etc/passwd",
    ],
)
async def test_avatar_url_at_a_local_or_metadata_address_is_refused(
    url: str,
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, published = avatars
    worker = _without_allowlist(worker)
    bot.pages["/avatars/a.png"] = Page(200, PNG, {"Content-Type": "image/png"})
    event = await _imported(sessions, url.format(port=bot.url.rsplit(":", 1)[1]))

    await refresh_external(worker, event)

    customer = await _customer(sessions, event.customer_id)
    assert customer.avatar_key is None
    assert customer.avatar_error is not None
    assert "non-public" in customer.avatar_error or "scheme" in customer.avatar_error
    assert bot.page_hits == []
    assert published == []


async def test_redirect_to_a_private_address_is_refused(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = avatars
    bot.pages["/avatars/r.png"] = Page(302, headers={"Location": "http://10.1.2.3/a.png"})
    event = await _imported(sessions, f"{bot.url}/avatars/r.png")

    await refresh_external(worker, event)

    customer = await _customer(sessions, event.customer_id)
    assert (customer.avatar_key, customer.avatar_error) == (
        None,
        "10.1.2.3 resolves to a non-public address",
    )
    assert bot.page_hits == ["/avatars/r.png"]


async def test_avatar_that_is_not_an_image_is_refused(
    avatars: tuple[Avatars, list[Event]],
    bot: FakeBotApi,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    worker, _published = avatars
    bot.pages["/avatars/page"] = Page(200, b"<html></html>", {"Content-Type": "text/html"})
    event = await _imported(sessions, f"{bot.url}/avatars/page")

    await refresh_external(worker, event)

    customer = await _customer(sessions, event.customer_id)
    assert (customer.avatar_key, customer.avatar_error) == (None, "not an image: text/html")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.100.100.200", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_only_public_addresses_are_fetched(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def _without_allowlist(worker: Avatars) -> Avatars:
    from dataclasses import replace

    return replace(worker, allowlist=frozenset())
