"""HTTP load: closed loop (N connections as fast as answers come) and open loop (a fixed rate,
latency measured from the scheduled send time, so a stall is not hidden by sending less).
Both run with this process's garbage collector paused (`harness.quiet_gc`), so the
generator's own pauses are not counted as the service's latency.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from bench.harness import paced, percentile, quiet_gc

BodySource = Callable[[int], bytes]


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)  # seconds, of 2xx answers
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0
    sent_at: dict[int, float] = field(default_factory=dict)  # request index → send time
    accepted_ids: set[int] = field(default_factory=set)  # request indexes answered 2xx

    @property
    def accepted(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)

    @property
    def rate(self) -> float:
        return self.accepted / self.elapsed if self.elapsed else 0.0

    def p(self, value: float) -> float:
        return percentile(self.latencies, value)

    def summary(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            "statuses": {str(key): value for key, value in self.statuses.items()},
            "elapsed_s": round(self.elapsed, 3),
            "rate_per_s": round(self.rate, 1),
            "p50_ms": round(self.p(50) * 1000, 2),
            "p99_ms": round(self.p(99) * 1000, 2),
            "max_ms": round(max(self.latencies, default=0.0) * 1000, 2),
        }


def session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


async def _post(
    client: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    headers: Mapping[str, str],
    load: Load,
    started: float,
    index: int = -1,
) -> None:
    try:
        async with client.post(url, data=payload, headers=headers) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    load.statuses[status] += 1
    if 200 <= status < 300:
        load.latencies.append(time.perf_counter() - started)
        load.accepted_ids.add(index)


async def closed_loop(
    url: str,
    bodies: BodySource,
    headers: Mapping[str, str],
    *,
    connections: int,
    count: int,
    seconds: float,
) -> Load:
    """`connections` workers, each sending its next request when the last one was answered."""
    load = Load()
    counter = iter(range(count))
    deadline = time.perf_counter() + seconds

    async def worker(client: aiohttp.ClientSession) -> None:
        for index in counter:
            if time.perf_counter() > deadline:
                return
            started = time.perf_counter()
            await _post(client, url, bodies(index), headers, load, started)

    async with session(connections) as client:
        with quiet_gc():
            begin = time.perf_counter()
            await asyncio.gather(*(worker(client) for _ in range(connections)))
            load.elapsed = time.perf_counter() - begin
    return load


async def open_loop(
    url: str,
    bodies: BodySource,
    headers: Mapping[str, str],
    *,
    rate: float,
    seconds: float,
    connections: int = 64,
    client: aiohttp.ClientSession | None = None,
) -> Load:
    """`rate` requests per second for `seconds`; latency counts from the scheduled time."""
    load = Load()
    total = max(1, int(rate * seconds))
    own = client is None
    http = client or session(connections)
    tasks: list[asyncio.Task[None]] = []
    try:
        with quiet_gc():
            begin = time.perf_counter()
            async for index, scheduled in paced(total, rate):
                load.sent_at[index] = scheduled
                payload = bodies(index)
                post = _post(http, url, payload, headers, load, scheduled, index)
                tasks.append(asyncio.create_task(post))
            await asyncio.gather(*tasks)
            load.elapsed = max(time.perf_counter() - begin, total / rate)
    finally:
        if own:
            await http.close()
    return load
