import asyncio
import socket
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from common.events import DealUpdated, MessageSent, SyncProgress
from common.ids import deal_id_for_telegram
from realtime.hub import Hub
from realtime.server import running
from realtime.testing import (
    Stack,
    close_code,
    message_received,
    receive,
    receive_until,
    text_of,
    token_for,
)


def _is(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: text_of(frame) == text


async def test_two_instances_deliver_each_event_once_with_the_same_seq(
    stack: Stack, user_id: str
) -> None:
    first, second = await stack.start(), await stack.start()
    on_first = await stack.connect(first, user_id)
    on_second = await stack.connect(second, user_id)

    await stack.publish(message_received(user_id, "hello"), message_received(user_id, "end"))

    frames_first = await receive_until(on_first, _is("end"))
    frames_second = await receive_until(on_second, _is("end"))
    assert [text_of(f) for f in frames_first] == ["hello", "end"]
    assert [(f["seq"], text_of(f)) for f in frames_first] == [
        (f["seq"], text_of(f)) for f in frames_second
    ]
    assert frames_first[0]["seq"] < frames_first[1]["seq"]


async def test_every_connection_of_a_user_gets_the_event(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    clients = [await stack.connect(realtime, user_id) for _ in range(3)]
    stranger = await stack.connect(realtime, "100000009")

    await stack.publish(message_received(user_id, "to all tabs"))

    texts = [text_of(await receive(client)) for client in clients]
    assert texts == ["to all tabs"] * 3
    await stack.publish(message_received("100000009", "for the stranger"))
    assert text_of(await receive(stranger)) == "for the stranger"


async def test_resume_with_since_replays_exactly_the_missed_events_then_live(
    stack: Stack, user_id: str
) -> None:
    realtime = await stack.start()
    client = await stack.connect(realtime, user_id)
    await stack.publish(message_received(user_id, "seen"))
    last_seen = (await receive(client))["seq"]
    await client.close()
    await stack.publish(
        message_received(user_id, "missed 1"),
        message_received("100000010", "someone else's"),
        message_received(user_id, "missed 2"),
    )

    resumed = await stack.connect(realtime, user_id, since=last_seen)
    replayed = await receive_until(resumed, _is("missed 2"))
    await stack.publish(message_received(user_id, "live"))
    live = await receive(resumed)

    assert [text_of(f) for f in replayed] == ["missed 1", "missed 2"]
    assert replayed[0]["seq"] > last_seen
    assert text_of(live) == "live"
    assert live["seq"] > replayed[-1]["seq"]


async def test_since_beyond_retention_answers_resync(stack: Stack, user_id: str) -> None:
    realtime = await stack.start(Hub(retention_events=2, retention_seconds=0))
    client = await stack.connect(realtime, user_id)
    await stack.publish(*(message_received(user_id, f"event {n}") for n in range(4)))
    frames = await receive_until(client, _is("event 3"))

    resumed = await stack.connect(realtime, user_id, since=frames[0]["seq"])
    frame = await receive(resumed)

    assert frame == {"type": "resync", "seq": realtime.hub.head}
    assert frame["seq"] >= frames[-1]["seq"]


async def test_since_within_the_newest_events_is_kept_past_the_age_limit(
    stack: Stack, user_id: str
) -> None:
    realtime = await stack.start(Hub(retention_events=2, retention_seconds=0))
    client = await stack.connect(realtime, user_id)
    await stack.publish(*(message_received(user_id, f"event {n}") for n in range(4)))
    frames = await receive_until(client, _is("event 3"))

    resumed = await stack.connect(realtime, user_id, since=frames[1]["seq"])

    assert [text_of(f) for f in await receive_until(resumed, _is("event 3"))] == [
        "event 2",
        "event 3",
    ]


async def test_unknown_since_answers_resync(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()

    future = await stack.connect(realtime, user_id, since=realtime.hub.head + 1000)
    garbage = await stack.connect(realtime, user_id, since="abc")  # type: ignore[arg-type]

    assert (await receive(future))["type"] == "resync"
    assert (await receive(garbage))["type"] == "resync"


async def test_reply_and_its_telegram_echo_produce_one_frame(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    client = await stack.connect(realtime, user_id)
    echo = message_received(user_id, "our reply", message_id=7001)
    sent = MessageSent(
        deal_id=deal_id_for_telegram(echo.business_connection_id, echo.chat_id),
        owner_user_id=user_id,
        business_connection_id=echo.business_connection_id,
        chat_id=echo.chat_id,
        client_request_id="reply-1",
        message_id=echo.message_id,
        message=echo.message,
    )

    await stack.publish(sent, echo, message_received(user_id, "end"))

    frames = await receive_until(client, _is("end"))
    assert [(f["type"], text_of(f)) for f in frames] == [
        ("message.created", "our reply"),
        ("message.created", "end"),
    ]


async def test_sync_progress_goes_to_admin_connections_only(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    admin = await stack.connect(realtime, user_id, token=token_for("100000011", admin=True))
    owner = await stack.connect(realtime, user_id)
    progress = SyncProgress(task_id=uuid.uuid4(), status="running", processed_chats=3)

    await stack.publish(progress, message_received(user_id, "end"))

    admin_frames = await receive_until(admin, _is("end"))
    owner_frames = await receive_until(owner, _is("end"))
    assert admin_frames[0]["type"] == "sync.progress"
    assert admin_frames[0]["task_id"] == str(progress.task_id)
    assert [f["type"] for f in owner_frames] == ["message.created"]


async def test_slow_client_is_closed_with_4008_while_a_fast_one_keeps_receiving(
    stack: Stack, user_id: str
) -> None:
    realtime = await stack.start(
        Hub(retention_events=10, retention_seconds=60, max_backlog_bytes=64 << 10)
    )
    # A tiny receive buffer and a one-frame queue: this client stops reading at once.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", realtime.port))
    slow = await stack.connect(realtime, user_id, max_queue=1, sock=sock)
    fast = await stack.connect(realtime, user_id)
    text = "x" * 4000

    published = 0
    while len(realtime.hub.clients[user_id]) == 2 and published < 3000:
        batch = [message_received(user_id, f"{published + n} {text}") for n in range(50)]
        await asyncio.gather(*(stack.publish(event) for event in batch))
        published += len(batch)
    seqs: list[int] = []
    async with asyncio.timeout(30):
        while len(seqs) < published:
            seqs.append((await receive(fast))["seq"])

    assert len(realtime.hub.clients[user_id]) == 1
    assert seqs == sorted(set(seqs))  # every frame once, in journal order
    assert await close_code(slow) == 4008


async def test_instance_restarted_between_two_events_loses_nothing(
    stack: Stack, user_id: str
) -> None:
    async with running(stack.settings, port=0) as before:
        await asyncio.wait_for(before.hub.ready.wait(), 20)
        client = await stack.connect(before, user_id)
        await stack.publish(message_received(user_id, "before the restart"))
        last_seen = (await receive(client))["seq"]
    await stack.publish(message_received(user_id, "during the restart"))
    after = await stack.start()

    resumed = await stack.connect(after, user_id, since=last_seen)

    frames = await receive_until(resumed, _is("during the restart"))
    assert [text_of(f) for f in frames] == ["during the restart"]


async def test_deal_updated_frame_carries_the_gateway_fields(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    client = await stack.connect(realtime, user_id)
    event = DealUpdated(
        deal_id=uuid.uuid4(),
        owner_user_id=user_id,
        business_connection_id="AbC",
        chat_id="222222222",
        version=3,
        unread_count=2,
        total_messages=7,
    )

    await stack.publish(event, event)
    await stack.publish(message_received(user_id, "end"))

    frames = await receive_until(client, _is("end"))
    assert [f["type"] for f in frames] == ["deal.updated", "message.created"]
    assert frames[0]["deal_id"] == str(event.deal_id)
    assert (frames[0]["unread_count"], frames[0]["total_messages"]) == (2, 7)


@pytest.mark.parametrize("lost", ["connection", "channel"])
async def test_lost_journal_link_delays_but_neither_drops_nor_repeats(
    stack: Stack, user_id: str, lost: str
) -> None:
    realtime = await stack.start()
    client = await stack.connect(realtime, user_id)
    await stack.publish(message_received(user_id, "before"))
    await receive(client)
    link = getattr(realtime.journal, lost)
    assert link is not None

    await link.close()
    await stack.publish(message_received(user_id, "during"), message_received(user_id, "after"))

    frames = await receive_until(client, _is("after"))
    assert [text_of(f) for f in frames] == ["during", "after"]
