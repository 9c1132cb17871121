"""Every Telegram sample update through the store, as the worker applies it."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from common.events import DealUpdated
from common.ids import (
    customer_id_for_telegram,
    deal_id_for_telegram,
    telegram_message_key,
    version_key,
)
from common.models import BusinessConnection, TelegramUser
from sync_worker.live import Stores, persist
from sync_worker.testing import (
    counted_from_items,
    customer_of,
    deal_of,
    event_from_update,
    items_of,
    keys_of,
)

CONNECTION = "AbCdEfGh0123456789_-business-conn-1"
DEAL = deal_id_for_telegram(CONNECTION, 222222222)
ORDER = [
    "business_connection",
    "business_message",
    "business_message_photo",
    "business_message_reply",
    "business_message_sent_by_bot",
    "edited_business_message",
    "deleted_business_messages",
    "business_connection_disabled",
]


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def _apply(
    stores: Stores, samples: dict[str, dict[str, Any]], name: str
) -> DealUpdated | None:
    updates = await persist(stores, [event_from_update(samples[name])])
    return updates[0] if updates else None


async def test_every_sample_update_leaves_the_deal_counted_and_previewed(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:
    published: dict[str, DealUpdated | None] = {}

    for name in ORDER:
        published[name] = await _apply(stores, samples, name)

    after_photo, after_reply = (
        published["business_message_photo"],
        published["business_message_reply"],
    )
    assert after_photo is not None
    assert (after_photo.total_messages, after_photo.unread_count) == (2, 2)
    assert after_photo.last_message is not None
    assert after_photo.last_message.text == "Receipt for #42 — paid"
    assert after_reply is not None
    assert (after_reply.total_messages, after_reply.unread_count) == (3, 0)
    deal = await deal_of(stores, DEAL)
    assert deal is not None
    assert deal.source == "telegram"
    assert deal.external_id == f"tg:{CONNECTION}:222222222"
    assert (deal.owner_user_id, deal.chat_id) == (111111111, 222222222)
    assert deal.customer_id == customer_id_for_telegram(222222222)
    assert (deal.total_messages, deal.unread_count) == (2, 0)
    assert deal.read_horizon_key == telegram_message_key(5015)
    assert deal.read_up_to == "5015"
    assert deal.last_message_id == "5015"
    assert deal.last_message_at == _at(1767229560)
    assert deal.last_message == {
        "text": "Thanks! Your order number is 42.",
        "direction": "outgoing",
        "date": "2026-01-01T01:06:00Z",
    }
    assert deal.synced_at is not None


async def test_sample_messages_are_stored_with_edits_versions_and_tombstones(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:

    for name in ORDER:
        await _apply(stores, samples, name)

    items = {item["sk"]: item for item in await items_of(stores, DEAL)}
    first = items[telegram_message_key(5012)]
    assert first["text"] == "Hi! Is order #42 ready? Details: https://example.com/o/42?utm=tg 🙏"
    assert first["edit_ts"] == 1767229320
    assert first["edit_date"] == "2026-01-01T01:02:00Z"
    assert first["deleted"] is True
    assert first["direction"] == "incoming"
    assert first["sender"] == {"id": "222222222", "name": "Boris Petrov"}
    version = items[version_key(telegram_message_key(5012), 1767229320)]
    assert version["text"] == first["text"]
    assert '"edited_business_message"' in version["raw_update"]
    photo = items[telegram_message_key(5013)]
    assert photo["deleted"] is True
    assert photo["caption"] == "Receipt for #42 — paid"
    assert photo["media"]["file_id"] == "AgACAgIAAxkBAAIBZ2d-constructed-y-1280"
    reply = items[telegram_message_key(5014)]
    assert (reply["direction"], reply["sent_by"], reply["reply_to_message_id"]) == (
        "outgoing",
        "owner",
        "5012",
    )
    assert "deleted" not in reply
    assert items[telegram_message_key(5015)]["sent_by"] == "bot"
    keys = await keys_of(stores, DEAL)
    assert [(key.message_id, key.direction, key.deleted) for key in keys] == [
        ("5012", "incoming", True),
        ("5013", "incoming", True),
        ("5014", "outgoing", False),
        ("5015", "outgoing", False),
    ]
    deal = await deal_of(stores, DEAL)
    assert deal is not None
    assert counted_from_items(list(items.values()), deal.read_horizon_key) == (2, 0)


async def test_sample_connection_owner_and_customer_rows(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:

    for name in ORDER:
        await _apply(stores, samples, name)

    async with stores.sessions() as session:
        connection = await session.get(BusinessConnection, CONNECTION)
        owner = await session.get(TelegramUser, 111111111)
    assert connection is not None
    assert connection.owner_user_id == 111111111
    assert connection.user_chat_id == 111111111
    assert (connection.is_enabled, connection.status) == (False, "disabled")
    assert connection.connected_at == _at(1767225600)
    assert connection.disabled_at == _at(1767225600)
    assert owner is not None
    assert (owner.first_name, owner.last_name, owner.username) == ("Anna", "Smirnova", "anna_shop")
    customer = await customer_of(stores, customer_id_for_telegram(222222222))
    assert customer is not None
    assert (customer.source, customer.external_id) == ("telegram", "222222222")
    assert (customer.name, customer.username) == ("Boris Petrov", "boris_p")


async def test_duplicate_updates_count_once(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:
    events = [event_from_update(samples[name]) for name in ORDER]
    await persist(stores, events)
    once = await deal_of(stores, DEAL)

    await persist(stores, events + [event_from_update(samples[name]) for name in ORDER])
    for event in events:
        await persist(stores, [event])

    again = await deal_of(stores, DEAL)
    assert once is not None
    assert again is not None
    assert (again.total_messages, again.unread_count) == (once.total_messages, once.unread_count)
    assert (again.total_messages, again.unread_count) == (2, 0)
    assert again.version == once.version
    assert len(await keys_of(stores, DEAL)) == 4


async def test_message_before_its_connection_creates_a_pending_connection(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:
    await _apply(stores, samples, "business_message")
    async with stores.sessions() as session:
        pending = await session.get(BusinessConnection, CONNECTION)
        assert pending is not None
        pending_state = (pending.status, pending.owner_user_id, pending.user_chat_id)

    await _apply(stores, samples, "business_connection")

    async with stores.sessions() as session:
        connection = await session.get(BusinessConnection, CONNECTION)
    assert pending_state == ("pending", 111111111, None)
    assert connection is not None
    assert (connection.status, connection.user_chat_id) == ("active", 111111111)
    assert connection.rights == {
        "can_reply": True,
        "can_read_messages": True,
        "can_delete_sent_messages": True,
    }
    deal = await deal_of(stores, DEAL)
    assert deal is not None
    assert (deal.total_messages, deal.unread_count) == (1, 1)
    assert deal.synced_at is not None


async def test_older_connection_update_is_ignored(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:
    newer = samples["business_connection_disabled"]
    newer["business_connection"]["date"] += 60

    await persist(stores, [event_from_update(newer)])
    await _apply(stores, samples, "business_connection")

    async with stores.sessions() as session:
        connection = await session.get(BusinessConnection, CONNECTION)
    assert connection is not None
    assert (connection.is_enabled, connection.status) == (False, "disabled")
    assert connection.disabled_at == _at(1767225660)
    assert connection.connected_at == _at(1767225600)


async def test_a_late_enable_at_the_same_date_does_not_undo_a_disable(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:
    # Both samples carry the connection's same `date`; the disable has the higher update_id.
    disabled, enabled = samples["business_connection_disabled"], samples["business_connection"]

    await persist(stores, [event_from_update(disabled)])
    await persist(stores, [event_from_update(enabled)])
    async with stores.sessions() as session:
        late = await session.get(BusinessConnection, CONNECTION)
    await persist(stores, [event_from_update(enabled), event_from_update(disabled)])
    async with stores.sessions() as session:
        batched = await session.get(BusinessConnection, CONNECTION, populate_existing=True)

    assert late is not None
    assert (late.is_enabled, late.status) == (False, "disabled")
    assert batched is not None
    assert batched.is_enabled is False


async def test_customer_names_come_from_the_newest_update(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:
    newer, older = samples["business_message_photo"], samples["business_message"]
    newer["business_message"]["chat"]["first_name"] = "Borya"

    await persist(stores, [event_from_update(newer)])
    await persist(stores, [event_from_update(older)])

    customer = await customer_of(stores, customer_id_for_telegram(222222222))
    assert customer is not None
    assert (customer.first_name, customer.name) == ("Borya", "Borya Petrov")


async def test_preview_is_cut_and_falls_back_when_the_newest_is_deleted(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:
    long = samples["business_message_reply"]
    long["business_message"]["text"] = "x" * 500
    await persist(stores, [event_from_update(samples["business_message"])])
    cut = (await persist(stores, [event_from_update(long)]))[0]
    deleted = samples["deleted_business_messages"]
    deleted["deleted_business_messages"]["message_ids"] = [5014]

    fallback = (await persist(stores, [event_from_update(deleted)]))[0]

    assert cut.last_message is not None
    assert cut.last_message.text == "x" * 200
    assert fallback.last_message_id == "5012"
    assert fallback.last_message is not None
    assert fallback.last_message.text.startswith("Hi! Is order #42 ready?")
    assert fallback.last_message.direction == "incoming"
    assert (fallback.total_messages, fallback.unread_count) == (1, 0)


async def test_deal_stays_unlisted_until_a_message_is_stored(
    stores: Stores, samples: dict[str, dict[str, Any]]
) -> None:
    await _apply(stores, samples, "deleted_business_messages")
    tombstoned = await deal_of(stores, DEAL)

    await _apply(stores, samples, "business_message")

    listed = await deal_of(stores, DEAL)
    assert tombstoned is not None
    assert tombstoned.synced_at is None
    assert listed is not None
    assert listed.synced_at is not None
    assert (listed.total_messages, listed.unread_count) == (0, 0)
    async with stores.sessions() as session:
        owners = list(await session.scalars(select(TelegramUser.id)))
    assert owners == [111111111]
