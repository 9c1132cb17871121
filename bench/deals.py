"""Deals list: the gateway's `GET /api/v1/deals/` latency per page at depth 1, 1,000, 100,000 and
1,000,000 of 1.1M deals (seeded with COPY by `bench.seed_deals`), one client and 8 clients.

Deep pages are reached with cursors minted by the gateway's own encoder (`encode_cursor` of the
cursor `Position` its list walk reads), pointing at the row just before the page. Each client
sends its requests one after another over a keep-alive connection, one page of each depth per
round, so every depth is measured across the same seconds; latency is measured in this
process. One client makes 1,200 requests per depth; 8 clients make 300 rounds each (2,400 per
depth). Beside it, for scale: the same keyset query through bare asyncpg.
"""

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg

from bench import seed_deals
from bench.harness import (
    Budget,
    NotMeasured,
    Row,
    ms,
    not_measured,
    percentile,
    quiet_gc,
    ratio,
)
from bench.infra import JWT_SECRET, Config, free_port
from common.auth import issue_token

NAME = "deals"
WHAT = "deals list"
TARGET = "deep page p99 ≤ 1.2× page 1; one-client p50 ≤ 5 ms"
LIMIT = 20
DEPTHS = (1, 1_000, 100_000, 1_000_000)
KEYSET_SQL = """
SELECT d.*, c.* FROM deal d LEFT OUTER JOIN customer c ON c.id = d.customer_id
WHERE d.synced_at IS NOT NULL AND d.owner_user_id = $1 AND d.last_message_at IS NOT NULL
  AND (d.last_message_at, d.id) < ($2, $3)
ORDER BY d.last_message_at DESC, d.id DESC LIMIT $4
"""


def _depths(count: int) -> list[int]:
    depths = [depth for depth in DEPTHS if depth <= count - LIMIT]
    deepest = count - LIMIT
    if depths[-1] < DEPTHS[-1] and deepest > depths[-1] * 2:
        depths.append(deepest)  # a smaller seed: its last page stands in for the deep one
    return depths


async def _cursors(config: Config, depths: list[int]) -> dict[int, tuple[str | None, Any]]:
    """depth → (the gateway's cursor, the key it continues from)."""
    from gateway.deals.queries import Position
    from gateway.pagination import encode_cursor

    database = await asyncpg.connect(config.stack.postgres_url)
    found: dict[int, tuple[str | None, Any]] = {}
    try:
        for depth in depths:
            if depth == 1:
                found[depth] = (None, None)
                continue
            row = await database.fetchrow(
                "SELECT last_message_at, id FROM deal WHERE owner_user_id = $1 "
                "AND synced_at IS NOT NULL ORDER BY last_message_at DESC, id DESC "
                "OFFSET $2 LIMIT 1",
                seed_deals.OWNER,
                depth - 2,
            )
            assert row is not None
            position = Position(walk="a", direction="n", at=row["last_message_at"], id=row["id"])
            found[depth] = (encode_cursor(position.payload()), (row["last_message_at"], row["id"]))
    finally:
        await database.close()
    return found


async def _client(
    http: aiohttp.ClientSession,
    url: str,
    pages: dict[int, dict[str, str]],
    budget: Budget,
    *,
    first: int = 0,
) -> dict[int, list[float]]:
    """One client walking the depths round-robin, a request per depth per round.

    Interleaved, every depth sees the same moments of the machine: measured one after the
    other, a few seconds of noise land on one depth's p99 and read as a depth effect.
    """
    depths = list(pages)
    depths = depths[first % len(depths) :] + depths[: first % len(depths)]
    latencies: dict[int, list[float]] = {depth: [] for depth in depths}
    for _ in budget:
        for depth in depths:
            started = time.perf_counter()
            async with http.get(url, params=pages[depth]) as response:
                await response.read()
                if response.status != 200:
                    raise NotMeasured(f"GET deals answered {response.status}")
            latencies[depth].append(time.perf_counter() - started)
    return latencies


async def _raw_sql(config: Config, keys: dict[int, Any], requests: int) -> dict[int, list[float]]:
    database = await asyncpg.connect(config.stack.postgres_url)
    far = (seed_deals.NEWEST + timedelta(days=1), uuid.UUID(int=2**128 - 1))
    timings: dict[int, list[float]] = {}
    try:
        statement = await database.prepare(KEYSET_SQL)
        for depth, key in keys.items():
            at, deal_id = key if key is not None else far
            timings[depth] = []
            for _ in range(requests):
                started = time.perf_counter()
                await statement.fetch(seed_deals.OWNER, at, deal_id, LIMIT + 1)
                timings[depth].append(time.perf_counter() - started)
    finally:
        await database.close()
    return timings


async def run(config: Config) -> list[Row]:
    count = config.size(1_100_000, 100_000)
    requests = config.size(1_200, 300)  # per depth for one client; 8 clients share as many
    data: dict[str, Any] = {"deals": count, "limit": LIMIT, "requests_per_depth": requests}
    began = time.monotonic()
    data["seeded"] = await seed_deals.seed(config.stack.postgres_url, count, log=False)
    data["seed_seconds"] = round(time.monotonic() - began, 1)
    depths = _depths(count)
    cursors = await _cursors(config, depths)

    port = free_port()
    gateway = config.service("gateway", port=port, GATEWAY_PORT=str(port))
    try:
        await gateway.start()
    except NotMeasured as error:
        return [not_measured(NAME, WHAT, TARGET, str(error))]
    token = issue_token(JWT_SECRET, str(seed_deals.OWNER), hours=1)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}/api/v1/deals/"
    pages: dict[int, dict[str, str]] = {}
    for depth in depths:
        cursor = cursors[depth][0]
        pages[depth] = {"limit": str(LIMIT), **({"cursor": cursor} if cursor else {})}
    try:
        connector = aiohttp.TCPConnector(limit=8)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
            for params in pages.values():
                await _check_page(http, url, params)
            await _client(http, url, pages, Budget(30, 10))
            with quiet_gc():
                single = await _client(http, url, pages, Budget(requests, 120))
            with quiet_gc():
                runs = await asyncio.gather(
                    *(
                        _client(http, url, pages, Budget(requests // 4, 120), first=index)
                        for index in range(8)
                    )
                )
            eight = {depth: [value for run in runs for value in run[depth]] for depth in depths}
    finally:
        await gateway.stop()
    raw = await _raw_sql(config, {d: cursors[d][1] for d in depths}, requests)
    data["one_client"] = _summary(single)
    data["eight_clients"] = _summary(eight)
    data["raw_sql"] = _summary(raw)
    raw_text = f"bare asyncpg keyset query: p50 {ms(percentile(raw[1], 50))} at page 1, " + (
        f"{ms(percentile(raw[depths[-1]], 50))} at {depths[-1]:,}"
    )
    return [
        _row("deals list, 1 client", single, depths, raw_text, data, check_p50=True),
        _row("deals list, 8 clients", eight, depths, "—", {}, check_p50=False),
    ]


async def _check_page(http: aiohttp.ClientSession, url: str, params: dict[str, str]) -> None:
    async with http.get(url, params=params) as response:
        body = await response.json(content_type=None)
        if response.status != 200 or len(body.get("results", [])) != LIMIT:
            raise NotMeasured(f"GET deals answered {response.status}: {str(body)[:200]}")


def _summary(timings: dict[int, list[float]]) -> dict[str, Any]:
    return {
        str(depth): {
            "requests": len(values),
            "p50_ms": round(percentile(values, 50) * 1000, 2),
            "p99_ms": round(percentile(values, 99) * 1000, 2),
        }
        for depth, values in timings.items()
    }


def _row(
    what: str,
    timings: dict[int, list[float]],
    depths: list[int],
    floor: str,
    data: dict[str, Any],
    *,
    check_p50: bool,
) -> Row:
    first = percentile(timings[1], 99)
    worst = (
        max(percentile(timings[depth], 99) for depth in depths[1:]) if len(depths) > 1 else first
    )
    share = ratio(worst, first)
    p50s = [percentile(timings[depth], 50) for depth in depths]
    passed = share is not None and share <= 1.2 and (not check_p50 or max(p50s) <= 0.005)
    figure = "; ".join(
        f"{depth:,}: {ms(percentile(timings[depth], 50))} / {ms(percentile(timings[depth], 99))}"
        for depth in depths
    )
    figure = f"p50 / p99 by depth: {figure}"
    return Row(
        NAME, what, figure, floor, share, TARGET, passed, "ratio: deepest p99 / page-1 p99", data
    )
