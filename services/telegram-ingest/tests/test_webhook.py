import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest
from ingest_fakes import OWNER_ID, SAMPLE_NAMES, Events, StartApp, load_sample
from prometheus_client import REGISTRY
from pydantic import SecretStr

from common.events import (
    ConnectionUpdated,
    Event,
    MessageEdited,
    MessageReceived,
    MessagesDeleted,
    event_adapter,
)
from common.settings import Settings
from telegram_ingest import mapping


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _connection(event: Event) -> dict[str, Any]:
    assert isinstance(event, ConnectionUpdated)
    connection = event.connection
    return {
        "id": connection.id,
        "user": connection.user.id,
        "enabled": connection.is_enabled,
        "rights": connection.rights,
        "date": connection.date,
    }


def _message(event: Event) -> dict[str, Any]:
    assert isinstance(event, MessageReceived | MessageEdited)
    message = event.message
    return {
        "chat": event.chat_id,
        "id": event.message_id,
        "sender": message.sender.id if message.sender else None,
        "bot": message.sender_business_bot.id if message.sender_business_bot else None,
        "text": message.text,
        "entities": message.entities,
        "caption": message.caption,
        "media": message.media.model_dump(exclude_none=True) if message.media else None,
        "reply_to": message.reply_to_message_id,
        "date": message.date,
        "edit_date": message.edit_date,
    }


def _deleted(event: Event) -> dict[str, Any]:
    assert isinstance(event, MessagesDeleted)
    return {"chat": event.chat_id, "ids": event.message_ids, "chat_name": event.chat.first_name}


RIGHTS = {"can_reply": True, "can_read_messages": True, "can_delete_sent_messages": True}
EXPECTED: dict[str, tuple[str, Callable[[Event], dict[str, Any]], dict[str, Any]]] = {
    "business_connection": (
        "telegram.connection.updated",
        _connection,
        {
            "id": "AbCdEfGh0123456789_-business-conn-1",
            "user": OWNER_ID,
            "enabled": True,
            "rights": RIGHTS,
            "date": _at(1767225600),
        },
    ),
    "business_connection_disabled": (
        "telegram.connection.updated",
        _connection,
        {
            "id": "AbCdEfGh0123456789_-business-conn-1",
            "user": OWNER_ID,
            "enabled": False,
            "rights": {},
            "date": _at(1767225600),
        },
    ),
    "business_message": (
        "telegram.message.received",
        _message,
        {
            "chat": "222222222",
            "id": "5012",
            "sender": "222222222",
            "bot": None,
            "text": "Hi! Is order #42 ready? Details: https://example.com/o/42 🙏",
            "entities": [{"offset": 33, "length": 24, "type": "url"}],
            "caption": None,
            "media": None,
            "reply_to": None,
            "date": _at(1767229200),
            "edit_date": None,
        },
    ),
    "business_message_photo": (
        "telegram.message.received",
        _message,
        {
            "chat": "222222222",
            "id": "5013",
            "sender": "222222222",
            "bot": None,
            "text": None,
            "entities": [],
            "caption": "Receipt for #42 — paid",
            "media": {
                "kind": "photo",
                "file_id": "AgACAgIAAxkBAAIBZ2d-constructed-y-1280",
                "file_unique_id": "AQADd1xrG0y",
                "file_size": 164502,
                "width": 1280,
                "height": 960,
            },
            "reply_to": None,
            "date": _at(1767229260),
            "edit_date": None,
        },
    ),
    "business_message_reply": (
        "telegram.message.received",
        _message,
        {
            "chat": "222222222",
            "id": "5014",
            "sender": OWNER_ID,
            "bot": None,
            "text": "Yes, it is ready — pick it up after 15:00.",
            "entities": [{"offset": 11, "length": 5, "type": "bold"}],
            "caption": None,
            "media": None,
            "reply_to": "5012",
            "date": _at(1767229500),
            "edit_date": None,
        },
    ),
    "business_message_sent_by_bot": (
        "telegram.message.received",
        _message,
        {
            "chat": "222222222",
            "id": "5015",
            "sender": OWNER_ID,
            "bot": "7000000001",
            "text": "Thanks! Your order number is 42.",
            "entities": [],
            "caption": None,
            "media": None,
            "reply_to": None,
            "date": _at(1767229560),
            "edit_date": None,
        },
    ),
    "edited_business_message": (
        "telegram.message.edited",
        _message,
        {
            "chat": "222222222",
            "id": "5012",
            "sender": "222222222",
            "bot": None,
            "text": "Hi! Is order #42 ready? Details: https://example.com/o/42?utm=tg 🙏",
            "entities": [{"offset": 33, "length": 31, "type": "url"}],
            "caption": None,
            "media": None,
            "reply_to": None,
            "date": _at(1767229200),
            "edit_date": _at(1767229320),
        },
    ),
    "deleted_business_messages": (
        "telegram.messages.deleted",
        _deleted,
        {"chat": "222222222", "ids": ["5012", "5013"], "chat_name": "Boris"},
    ),
}


def test_every_sample_has_an_expectation() -> None:
    assert sorted(EXPECTED) == SAMPLE_NAMES


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_sample_update_becomes_its_event_with_owner(
    name: str, client: httpx.AsyncClient, events: Events
) -> None:
    await client.post("/telegram/webhook/", json=load_sample("business_connection"))
    await events.next()
    update = load_sample(name)
    routing_key, view, expected = EXPECTED[name]

    response = await client.post("/telegram/webhook/", json=update)

    assert response.status_code == 200
    event = event_adapter.validate_python(await events.next())
    assert getattr(event, "type") == routing_key  # noqa: B009
    assert isinstance(event, ConnectionUpdated | MessageReceived | MessageEdited | MessagesDeleted)
    assert event.owner_user_id == OWNER_ID
    assert event.update_id == update["update_id"]
    assert event.business_connection_id == "AbCdEfGh0123456789_-business-conn-1"
    assert event.raw_update == update
    assert view(event) == expected
    assert await events.drain() == []


async def test_path_without_trailing_slash_answers_the_same(
    client: httpx.AsyncClient, events: Events
) -> None:
    response = await client.post("/telegram/webhook", json=load_sample("business_connection"))

    assert response.status_code == 200
    assert (await events.next())["type"] == "telegram.connection.updated"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Telegram-Bot-Api-Secret-Token": "wrong-secret"}, 401),
        ({"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret-and-more"}, 401),
        ({"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret"}, 200),
    ],
    ids=["missing", "wrong", "longer", "right"],
)
async def test_secret_is_required(
    headers: dict[str, str], status: int, client: httpx.AsyncClient, events: Events
) -> None:
    del client.headers["X-Telegram-Bot-Api-Secret-Token"]

    response = await client.post(
        "/telegram/webhook/", json=load_sample("business_connection"), headers=headers
    )

    assert response.status_code == status
    assert len(await events.drain()) == (1 if status == 200 else 0)


async def test_other_methods_are_405(client: httpx.AsyncClient) -> None:
    answers = [
        (await client.request(method, "/telegram/webhook/")).status_code
        for method in ("GET", "PUT", "DELETE", "PATCH")
    ]

    assert answers == [405, 405, 405, 405]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"{}",
        b'{"update_id": "1"}',
        b'{"update_id": 1.5}',
        b'{"update_id": true}',
        b'{"update_id": -1}',
        b"\xff\xfe",
        b'{"update_id": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"update_id": 1, "business_message": ' + b"[" * 300 + b"]" * 300 + b"}",
        b'{"update_id": 1, "business_message": "\\ud800"}',
        b'{"update_id": 1, "business_message": {"\\udfff": 1}}',
    ],
    ids=[
        "empty",
        "text",
        "array",
        "string",
        "no-id",
        "str-id",
        "float-id",
        "bool-id",
        "negative-id",
        "binary",
        "deep",
        "too-deep-to-park",
        "lone-surrogate",
        "lone-surrogate-key",
    ],
)
async def test_malformed_body_is_400_and_publishes_nothing(
    body: bytes, client: httpx.AsyncClient, events: Events
) -> None:
    response = await client.post(
        "/telegram/webhook/", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert await events.drain() == []


async def test_body_over_one_mebibyte_is_413(client: httpx.AsyncClient, events: Events) -> None:
    update = load_sample("business_message") | {"padding": "x" * (1024 * 1024)}

    declared = await client.post("/telegram/webhook/", json=update)

    async def chunks() -> Any:
        yield b'{"update_id": 1, "padding": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    streamed = await client.post("/telegram/webhook/", content=chunks())
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert await events.drain() == []


async def test_unparseable_update_is_parked_and_answered_200(
    client: httpx.AsyncClient, events: Events
) -> None:
    update = load_sample("business_message")
    update["business_message"]["date"] = {"a newer": "shape"}
    parked_before = REGISTRY.get_sample_value("telegram_ingest_updates_parked_total") or 0

    response = await client.post("/telegram/webhook/", json=update)

    assert response.status_code == 200
    parked = await events.next()
    assert parked["type"] == "telegram.update.unparsed"
    assert parked["update_id"] == update["update_id"]
    assert parked["raw_update"] == update
    assert "date" in parked["error"]
    assert REGISTRY.get_sample_value("telegram_ingest_updates_parked_total") == parked_before + 1


async def test_parked_update_is_kept_in_its_durable_queue(
    client: httpx.AsyncClient, app_settings: Settings
) -> None:
    update = load_sample("deleted_business_messages")
    update["update_id"] = 123456789
    update["deleted_business_messages"]["message_ids"] = "not a list"

    response = await client.post("/telegram/webhook/", json=update)

    assert response.status_code == 200
    connection = await aio_pika.connect(app_settings.rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            "telegram-ingest.telegram.update.unparsed", durable=True, passive=True
        )
        kept = []
        while (message := await queue.get(fail=False)) is not None:
            kept.append(json.loads(message.body))  # left unacknowledged: it stays queued
    assert [body["raw_update"] for body in kept if body["update_id"] == 123456789] == [update]


async def test_other_update_types_are_counted_and_not_published(
    client: httpx.AsyncClient, events: Events
) -> None:
    update = {
        "update_id": 42,
        "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}},
    }
    labels = {"type": "message"}
    before = REGISTRY.get_sample_value("telegram_ingest_updates_ignored_total", labels) or 0

    response = await client.post("/telegram/webhook/", json=update)

    assert response.status_code == 200
    assert await events.drain() == []
    assert REGISTRY.get_sample_value("telegram_ingest_updates_ignored_total", labels) == before + 1


async def test_probes_answer(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz/")
    metrics = await client.get("/metrics")

    assert health.status_code == 200
    assert ready.json() == {"status": "ok"}
    assert "telegram_ingest_publish_confirm_seconds_bucket" in metrics.text


async def test_update_the_catalogue_cannot_hold_is_parked(
    client: httpx.AsyncClient, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> MessageReceived:
        return MessageReceived.model_validate({})

    monkeypatch.setattr(mapping, "message_received", refuse)
    await client.post("/telegram/webhook/", json=load_sample("business_connection"))
    await events.next()

    response = await client.post("/telegram/webhook/", json=load_sample("business_message"))

    assert response.status_code == 200
    parked = await events.next()
    assert parked["type"] == "telegram.update.unparsed"
    assert parked["error"].startswith("mapping: ")


async def test_metrics_count_updates_events_rejections_and_confirms(
    client: httpx.AsyncClient, events: Events
) -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    names: tuple[tuple[str, dict[str, str]], ...] = (
        ("telegram_ingest_updates_received_total", {"type": "business_connection"}),
        ("telegram_ingest_events_published_total", {"type": "telegram.connection.updated"}),
        ("telegram_ingest_requests_rejected_total", {"reason": "secret"}),
        ("telegram_ingest_publish_confirm_seconds_count", {}),
        # Every request is timed, the refused one too.
        ("telegram_ingest_webhook_seconds_count", {}),
    )
    before = [value(name, **labels) for name, labels in names]

    await client.post("/telegram/webhook/", json=load_sample("business_connection"))
    await client.post(
        "/telegram/webhook/",
        json={"update_id": 1},
        headers={"X-Telegram-Bot-Api-Secret-Token": "x"},
    )

    after = [value(name, **labels) for name, labels in names]
    assert [round(a - b) for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1, 2]
    assert value("telegram_ingest_publishes_in_flight") == 0
    assert len(await events.drain()) == 1


async def test_without_a_configured_secret_every_request_is_401(
    app_settings: Settings, start_app: StartApp, events: Events
) -> None:
    settings = app_settings.model_copy(update={"telegram_webhook_secret": SecretStr("")})

    async with start_app(settings) as client:
        empty = await client.post(
            "/telegram/webhook/",
            json=load_sample("business_connection"),
            headers={"X-Telegram-Bot-Api-Secret-Token": ""},
        )
        del client.headers["X-Telegram-Bot-Api-Secret-Token"]
        missing = await client.post("/telegram/webhook/", json=load_sample("business_connection"))

    assert (empty.status_code, missing.status_code) == (401, 401)
    assert await events.drain() == []
