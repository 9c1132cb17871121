"""Any order, any number of times: the stores end up as the in-order sequence leaves them."""

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.dynamo import to_attributes
from common.events import (
    DealUpdated,
    MessageEdited,
    MessageReceived,
    MessagesDeleted,
    TelegramChat,
    TelegramMessage,
    TelegramUser,
)
from common.ids import deal_id_for_telegram, telegram_message_key, version_key
from common.models import Base, BusinessConnection, Customer
from sync_worker import live
from sync_worker.batching import Batcher
from sync_worker.live import Stores, persist
from sync_worker.store import LiveEvent
from sync_worker.testing import (
    counted_from_items,
    deal_of,
    event_from_update,
    items_of,
    keys_of,
    new_stores,
)

OWNER = "111111111"
CONNECTION = "conn-order"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _chat(chat_id: int) -> TelegramChat:
    return TelegramChat(id=chat_id, first_name=f"Customer {chat_id}")


def _message(
    chat_id: int, message_id: int, *, outgoing: bool, edit: int = 0, long: bool = False
) -> TelegramMessage:
    sender = TelegramUser(id=OWNER if outgoing else chat_id, first_name="someone")
    body = f"chat {chat_id} message {message_id} edit {edit} "
    return TelegramMessage(
        message_id=message_id,
        chat=_chat(chat_id),
        sender=sender,
        date=BASE + timedelta(minutes=message_id),
        edit_date=BASE + timedelta(minutes=message_id, seconds=edit) if edit else None,
        text=body * (20 if long else 1),
    )


def received(chat_id: int, message_id: int, *, outgoing: bool, long: bool = False) -> LiveEvent:
    return MessageReceived(
        owner_user_id=OWNER,
        update_id=message_id,
        business_connection_id=CONNECTION,
        chat_id=chat_id,
        message_id=message_id,
        message=_message(chat_id, message_id, outgoing=outgoing, long=long),
    )


def edited(chat_id: int, message_id: int, edit: int, *, outgoing: bool) -> LiveEvent:
    return MessageEdited(
        owner_user_id=OWNER,
        update_id=message_id * 100 + edit,
        business_connection_id=CONNECTION,
        chat_id=chat_id,
        message_id=message_id,
        message=_message(chat_id, message_id, outgoing=outgoing, edit=edit),
        raw_update={"edit": edit},
    )


def deleted(chat_id: int, message_ids: list[int], at: int) -> LiveEvent:
    return MessagesDeleted(
        owner_user_id=OWNER,
        update_id=at,
        business_connection_id=CONNECTION,
        chat_id=chat_id,
        chat=_chat(chat_id),
        message_ids=message_ids,
        occurred_at=BASE + timedelta(hours=1, seconds=at),
    )


def connection(date_offset: int, *, enabled: bool) -> LiveEvent:
    return event_from_update(
        {
            "update_id": 1,
            "business_connection": {
                "id": CONNECTION,
                "user": {"id": int(OWNER), "is_bot": False, "first_name": "Anna"},
                "user_chat_id": int(OWNER),
                "date": int(BASE.timestamp()) + date_offset,
                "is_enabled": enabled,
                "rights": {"can_reply": True} if enabled else {},
            },
        }
    )


@st.composite
def histories(draw: st.DrawFn) -> list[LiveEvent]:
    """A plausible in-order history of a few chats: messages, their edits, then deletes."""
    events: list[LiveEvent] = [connection(0, enabled=True)]
    for chat_id in range(1001, 1001 + draw(st.integers(1, 3))):
        count = draw(st.integers(1, 5))
        for message_id in range(1, count + 1):
            outgoing = draw(st.booleans())
            events.append(received(chat_id, message_id, outgoing=outgoing, long=message_id == 2))
            for edit in range(1, draw(st.integers(0, 2)) + 1):
                events.append(edited(chat_id, message_id, edit, outgoing=outgoing))
        # count + 1: a message deleted that never arrives at all
        gone = draw(st.lists(st.integers(1, count + 1), max_size=3, unique=True))
        if gone:
            events.append(deleted(chat_id, sorted(gone), at=chat_id))
    if draw(st.booleans()):
        events.append(connection(60, enabled=False))
    return events


async def _snapshot(stores: Stores) -> dict[str, Any]:
    """Everything the stores hold, minus what legitimately differs (times of writing)."""
    async with stores.sessions() as session:
        connections = [
            (row.status, row.is_enabled, row.rights, row.connected_at, row.disabled_at)
            for row in await session.scalars(select(BusinessConnection))
        ]
        customers = [
            (row.id, row.name, row.source_date)
            for row in await session.scalars(select(Customer).order_by(Customer.id))
        ]
    deals: dict[str, Any] = {}
    for chat_id in range(1001, 1004):
        deal_id = deal_id_for_telegram(CONNECTION, chat_id)
        deal = await deal_of(stores, deal_id)
        if deal is None:
            continue
        items = await items_of(stores, deal_id)
        total, unread = counted_from_items(items, deal.read_horizon_key)
        assert (deal.total_messages, deal.unread_count) == (total, unread)
        deals[str(chat_id)] = {
            "counters": (deal.total_messages, deal.unread_count),
            "horizon": (deal.read_horizon_key, deal.read_up_to),
            "last": (deal.last_message_id, deal.last_message_at, deal.last_message),
            "listed": deal.synced_at is not None,
            "keys": [
                (k.message_id, k.direction, k.state, k.deleted, k.sent_at, k.edit_date)
                for k in await keys_of(stores, deal_id)
            ],
            "items": items,
        }
    return {"connections": connections, "customers": customers, "deals": deals}


async def _truncate(sessions: async_sessionmaker[AsyncSession]) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with sessions() as session, session.begin():
        await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), history=histories())
async def test_shuffled_and_duplicated_events_end_as_in_order(
    stores: Stores, data: st.DataObject, history: list[LiveEvent]
) -> None:
    await _truncate(stores.sessions)
    in_order = await new_stores(stores.sessions, stores.dynamo)
    for event in history:
        await persist(in_order, [event])
    expected = await _snapshot(in_order)
    await _truncate(stores.sessions)
    shuffled = data.draw(st.permutations(history))
    repeats = data.draw(st.lists(st.sampled_from(history), max_size=5))
    # A republished duplicate is a new event (new id) carrying the same update.
    arrivals = shuffled + [event.model_copy(update={"event_id": uuid.uuid4()}) for event in repeats]
    arrivals = data.draw(st.permutations(arrivals))
    batch_sizes = data.draw(st.lists(st.integers(1, 6), min_size=len(arrivals)))
    target = await new_stores(stores.sessions, stores.dynamo)

    position = 0
    for size in batch_sizes:
        if position >= len(arrivals):
            break
        await persist(target, arrivals[position : position + size])
        position += size

    assert await _snapshot(target) == expected


async def test_edit_before_its_message_creates_it_and_keeps_the_edit(stores: Stores) -> None:
    deal_id = deal_id_for_telegram(CONNECTION, 1001)

    await persist(stores, [edited(1001, 7, 2, outgoing=False)])
    await persist(stores, [edited(1001, 7, 1, outgoing=False)])
    await persist(stores, [received(1001, 7, outgoing=False)])

    items = {item["sk"]: item for item in await items_of(stores, deal_id)}
    key = telegram_message_key(7)
    assert items[key]["text"] == "chat 1001 message 7 edit 2 "
    assert items[key]["edit_ts"] == int((BASE + timedelta(minutes=7, seconds=2)).timestamp())
    assert {
        version_key(key, items[key]["edit_ts"]),
        version_key(key, items[key]["edit_ts"] - 1),
    } < set(items)
    deal = await deal_of(stores, deal_id)
    assert deal is not None
    assert (deal.total_messages, deal.unread_count) == (1, 1)
    assert deal.last_message is not None
    assert deal.last_message["text"] == "chat 1001 message 7 edit 2 "


async def test_delete_before_its_message_leaves_a_tombstone_the_message_keeps(
    stores: Stores,
) -> None:
    deal_id = deal_id_for_telegram(CONNECTION, 1001)

    await persist(stores, [deleted(1001, [3], at=1)])
    tombstone = await keys_of(stores, deal_id)
    await persist(stores, [received(1001, 3, outgoing=False)])
    await persist(stores, [received(1001, 3, outgoing=False)])

    assert [(k.state, k.deleted) for k in tombstone] == [("tombstone", True)]
    item = (await items_of(stores, deal_id))[0]
    assert item["deleted"] is True
    assert item["text"] == "chat 1001 message 3 edit 0 "
    deal = await deal_of(stores, deal_id)
    assert deal is not None
    assert (deal.total_messages, deal.unread_count) == (0, 0)
    assert deal.last_message is None


async def test_writes_never_touch_the_avatar_workers_attributes(stores: Stores) -> None:
    deal_id = deal_id_for_telegram(CONNECTION, 1001)
    await persist(stores, [received(1001, 4, outgoing=False)])
    await stores.dynamo.update_item(
        TableName=stores.table,
        Key=to_attributes({"deal_id": str(deal_id), "sk": telegram_message_key(4)}),
        UpdateExpression="SET media_status = :s, media_key = :k",
        ExpressionAttributeValues=to_attributes({":s": "stored", ":k": "media/4.jpg"}),
    )

    await persist(stores, [edited(1001, 4, 1, outgoing=False), deleted(1001, [4], at=2)])

    item = next(i for i in await items_of(stores, deal_id) if i["sk"] == telegram_message_key(4))
    assert (item["media_status"], item["media_key"]) == ("stored", "media/4.jpg")
    assert (item["edit_ts"], item["deleted"]) == (
        int((BASE + timedelta(minutes=4, seconds=1)).timestamp()),
        True,
    )


async def test_failure_after_the_dynamodb_write_is_repaired_by_redelivery(
    stores: Stores,
) -> None:
    deal_id = deal_id_for_telegram(CONNECTION, 1001)
    events = [received(1001, 1, outgoing=False), received(1001, 2, outgoing=True)]

    async def crash(_events: object) -> None:
        raise RuntimeError("killed between DynamoDB and the commit")

    live.after_dynamo_write = crash
    try:
        failed = False
        try:
            await persist(stores, events)
        except RuntimeError:
            failed = True
    finally:
        live.after_dynamo_write = None
    half = (len(await items_of(stores, deal_id)), await deal_of(stores, deal_id))
    await persist(stores, events)

    assert failed
    assert half == (2, None)
    deal = await deal_of(stores, deal_id)
    assert deal is not None
    assert (deal.total_messages, deal.unread_count) == (2, 0)
    assert deal.synced_at is not None
    assert counted_from_items(await items_of(stores, deal_id), deal.read_horizon_key) == (2, 0)


async def test_concurrent_workers_end_as_in_order(stores: Stores) -> None:
    history: list[LiveEvent] = [connection(0, enabled=True)]
    for chat_id in (1001, 1002):
        for message_id in range(1, 31):
            history.append(received(chat_id, message_id, outgoing=message_id % 4 == 0))
            if message_id % 6 == 0:
                history.append(edited(chat_id, message_id, 1, outgoing=message_id % 4 == 0))
        history.append(deleted(chat_id, [3, 12, 30, 31], at=chat_id))
    in_order = await new_stores(stores.sessions, stores.dynamo)
    for event in history:
        await persist(in_order, [event])
    expected = await _snapshot(in_order)
    await _truncate(stores.sessions)
    arrivals = list(reversed(history)) + history[::3]
    target = await new_stores(stores.sessions, stores.dynamo)

    async def worker(share: list[LiveEvent]) -> None:
        for start in range(0, len(share), 4):
            for _attempt in range(5):  # a deadlock victim is redelivered, as by the broker
                try:
                    await persist(target, share[start : start + 4])
                    break
                except Exception:  # noqa: S112 - the retry is the point
                    continue

    await asyncio.gather(*(worker(arrivals[offset::3]) for offset in range(3)))

    assert await _snapshot(target) == expected


async def test_group_commit_of_shuffled_events_ends_as_in_order(stores: Stores) -> None:
    history: list[LiveEvent] = [connection(0, enabled=True)]
    for message_id in range(1, 41):
        history.append(received(1001, message_id, outgoing=message_id % 9 == 0))
        if message_id % 5 == 0:
            history.append(edited(1001, message_id, 1, outgoing=message_id % 9 == 0))
    history.append(deleted(1001, [2, 40], at=1))
    good = received(1001, 41, outgoing=False)
    in_order = await new_stores(stores.sessions, stores.dynamo)
    for event in [*history, good]:
        await persist(in_order, [event])
    expected = await _snapshot(in_order)
    await _truncate(stores.sessions)
    target = await new_stores(stores.sessions, stores.dynamo)
    published: list[DealUpdated] = []
    persisted: list[int] = []

    async def counted_commit(events: Sequence[LiveEvent]) -> list[DealUpdated]:
        persisted.append(len(events))
        return await live.commit(target, events)

    async def publish(update: DealUpdated) -> None:
        published.append(update)

    batcher = Batcher(partial(live.write_items, target), counted_commit, publish)
    assert isinstance(good, MessageReceived)
    poison = good.model_copy(update={"message_id": str(10**13)})  # beyond any sort key

    async def late(event: LiveEvent) -> None:
        await asyncio.sleep(0.01)  # into a later batch, beside the next events
        await batcher.submit(event)

    results = await asyncio.gather(
        late(poison),
        late(good),
        *(batcher.submit(event) for event in reversed(history)),
        return_exceptions=True,
    )

    assert isinstance(results[0], ValueError)
    assert results[1:] == [None] * (len(history) + 1)
    assert max(persisted) > 1
    assert await _snapshot(target) == expected
    newest = max(published, key=lambda update: update.version)
    assert (newest.total_messages, newest.unread_count) == expected["deals"]["1001"]["counters"]
