"""Connections: resident memory per idle WebSocket connection at 10,000 connections, realtime
next to a bare `websockets` server with compression off.

Each server runs as its own process. Its RSS (/proc) is read after a warm-up of 50
connections, then after N more idle connections (one user each, with a real token for
realtime) and a few seconds to settle; the difference over N is the figure. The clients are
raw sockets in this process that only answer pings.
"""

import asyncio
import sys
from typing import Any

from bench.harness import NotMeasured, Row, not_measured, raise_open_files, ratio, rss_bytes
from bench.infra import JWT_SECRET, Config, Service, free_port
from bench.wsclients import IdleConnections
from common.auth import issue_token

NAME = "connections"
WHAT = "memory per idle connection"
TARGET = "≤ 2× the floor and ≤ 30 KiB"
WARM = 50
FIRST_USER = 740_000_000


async def _per_connection(service: Service, paths: list[str], data: dict[str, Any]) -> float:
    clients = IdleConnections()
    assert service.port is not None
    try:
        warm = await clients.open_many(service.port, paths[:WARM])
        await asyncio.sleep(2)
        before = rss_bytes(service.pid)
        opened = await clients.open_many(service.port, paths[WARM:], concurrency=200)
        await asyncio.sleep(5)
        after = rss_bytes(service.pid)
        still_open = clients.open
    finally:
        clients.close()
    count = len(paths) - WARM
    data[service.name] = {
        "warm": warm,
        "upgraded": opened,
        "open_at_reading": still_open - WARM,
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
    }
    if opened < count or still_open < len(paths):
        raise NotMeasured(f"{service.name}: {opened} of {count} upgraded, {still_open} open")
    return (after - before) / count


async def run(config: Config) -> list[Row]:
    count = config.size(10_000, 2_000)
    limit = raise_open_files(count + WARM + 1_000)
    if limit < count + WARM + 200:
        count = limit - WARM - 200
    data: dict[str, Any] = {"connections": count, "open_files_limit": limit}

    port = free_port()
    realtime = config.service("realtime", port=port, REALTIME_PORT=str(port))
    try:
        await realtime.start()
    except NotMeasured as error:
        return [not_measured(NAME, WHAT, TARGET, str(error))]
    users = [FIRST_USER + index for index in range(count + WARM)]
    paths = [
        f"/ws/chats/{user}/?token={issue_token(JWT_SECRET, str(user), hours=1)}" for user in users
    ]
    try:
        ours = await _per_connection(realtime, paths, data)
    finally:
        await realtime.stop()

    port = free_port()
    bare = Service(
        "floor-ws",
        [sys.executable, "-m", "bench.floors", "ws", "--port", str(port)],
        config.stack.env(),
        port=port,
        logs=config.stack.logs,
    )
    await bare.start()
    try:
        floor = await _per_connection(bare, [f"/ws/{user}/" for user in users], data)
    finally:
        await bare.stop()

    share = ratio(ours, floor)
    passed = share is not None and share <= 2.0 and ours <= 30 * 1024
    figure = f"{ours / 1024:.1f} KiB per connection at {count:,}"
    floor_text = f"{floor / 1024:.1f} KiB per connection (bare websockets, no compression)"
    return [Row(NAME, WHAT, figure, floor_text, share, TARGET, passed, "", data)]
