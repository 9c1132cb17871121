"""Fan-out: CPU milliseconds realtime spends to push one event to 1,000 connections of one user,
next to `websockets.broadcast` of a prebuilt frame to 1,000 connections.

Both servers run as their own processes; their CPU time (user + system, /proc) is read around
E events paced 20 ms apart, minus their idle CPU over the same time, divided by E. realtime's
figure includes everything an event costs it: reading the journal stream, decoding the event,
building and encoding the frame once, writing it to 1,000 transports. The floor gets the very
frame realtime sent (same size) and only writes it. Clients are `websockets` clients in this
process; an event counts once every client has its frame.
"""

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import amqp, telegram
from bench.harness import NotMeasured, Row, cpu_seconds, not_measured, ratio, wait_until
from bench.infra import JWT_SECRET, Config, Service, free_port
from bench.wsclients import Listeners
from common.auth import issue_token

NAME = "fanout"
WHAT = "fan-out to 1,000 connections"
TARGET = "≤ 2× the floor"
CLIENTS = 1_000
OWNER = 720_000_001
INTERVAL = 0.02


class _Counter:
    def __init__(self) -> None:
        self.frames = 0
        self.sample: bytes | str | None = None

    def __call__(self, _index: int, frame: bytes | str, _at: float) -> None:
        self.frames += 1
        if self.sample is None:
            self.sample = frame


async def _idle_cpu(pid: int, seconds: float = 2.0) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def _measure(
    pid: int, counter: _Counter, events: int, push: Callable[[], Any], timeout: float
) -> float:
    """CPU seconds per event above idle, once every client received every frame."""
    idle = await _idle_cpu(pid)
    counter.frames = 0
    before, begin = cpu_seconds(pid), time.monotonic()
    await push()
    if not await wait_until(lambda: counter.frames >= events * CLIENTS, timeout):
        raise NotMeasured(f"only {counter.frames} of {events * CLIENTS} frames arrived")
    elapsed = time.monotonic() - begin
    return max(0.0, cpu_seconds(pid) - before - idle * elapsed) / events


async def run(config: Config) -> list[Row]:
    events = config.size(100, 30)
    data: dict[str, Any] = {"clients": CLIENTS, "events": events, "interval_s": INTERVAL}
    port = free_port()
    realtime = config.service("realtime", port=port, REALTIME_PORT=str(port))
    try:
        await realtime.start()
    except NotMeasured as error:
        return [not_measured(NAME, WHAT, TARGET, str(error))]
    counter = _Counter()
    listeners = Listeners(counter)
    token = issue_token(JWT_SECRET, str(OWNER), hours=1)
    updates = telegram.Updates(start=300_000_000)
    try:
        await listeners.open([f"ws://127.0.0.1:{port}/ws/chats/{OWNER}/?token={token}"] * CLIENTS)
        async with amqp.channel(config.stack.rabbitmq_url) as chan:
            exchange = await amqp.events_exchange(chan)

            async def push() -> None:
                for index in range(events):
                    update = telegram.business_message(
                        updates.next_id(), OWNER, 730_000_000, index + 1, f"fanout-{index}"
                    )
                    event = telegram.message_event(update, OWNER)
                    await amqp.publish_events(exchange, [event])
                    await asyncio.sleep(INTERVAL)

            ours = await _measure(realtime.pid, counter, events, push, timeout=60)
    finally:
        await listeners.close()
        await realtime.stop()
    frame = counter.sample or json.dumps({"type": "message.created", "seq": 1, "text": "x" * 900})
    frame_text = frame.decode() if isinstance(frame, bytes) else frame
    data["frame_bytes"] = len(frame_text.encode())
    data["realtime_cpu_ms_per_event"] = round(ours * 1000, 3)

    floor = await _floor(config, frame_text, events, data)
    share = ratio(ours, floor)
    passed = share is not None and share <= 2.0
    figure = f"{ours * 1000:.1f} ms CPU per event"
    floor_text = f"{floor * 1000:.1f} ms CPU per broadcast"
    return [Row(NAME, WHAT, figure, floor_text, share, TARGET, passed, "", data)]


async def _floor(config: Config, frame: str, events: int, data: dict[str, Any]) -> float:
    port = free_port()
    server = Service(
        "floor-ws-fanout",
        [sys.executable, "-m", "bench.floors", "ws", "--port", str(port)],
        config.stack.env(),
        port=port,
        logs=config.stack.logs,
    )
    await server.start()
    counter = _Counter()
    listeners = Listeners(counter)
    control = Listeners(lambda *_args: None)
    try:
        await listeners.open([f"ws://127.0.0.1:{port}/ws/"] * CLIENTS)
        await control.open([f"ws://127.0.0.1:{port}/control"])

        async def push() -> None:
            order = {"frame": frame, "count": events, "interval": INTERVAL}
            await control.connections[0].send(json.dumps(order))

        cost = await _measure(server.pid, counter, events, push, timeout=60)
    finally:
        await control.close()
        await listeners.close()
        await server.stop()
    data["floor_cpu_ms_per_broadcast"] = round(cost * 1000, 3)
    return cost
