"""What every benchmark shares: result rows, percentiles, bounded loops, process readings.

A `Row` is one line of the table: the Chat Sync figure, its raw floor measured in the same run,
their ratio, the target and whether it was met. Absolute numbers drift on a shared 2-core
machine; the ratio to a floor measured minutes apart on the same machine drifts much less.
"""

import asyncio
import contextlib
import gc
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Row:
    bench: str  # the benchmark's name on the command line
    what: str
    figure: str
    floor: str
    ratio: float | None
    target: str
    passed: bool | None  # None: not measured, or no target on this row
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def not_measured(bench: str, what: str, target: str, reason: str) -> Row:
    return Row(bench, what, f"not measured: {reason}", "—", None, target, None)


class NotMeasured(Exception):
    """A benchmark could not run (a service missing or failing to start); the reason is shown."""


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    value = seconds * 1000
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def rate(value: float, unit: str = "/s") -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:,.1f}{unit}"


def ratio(figure: float, floor: float) -> float | None:
    if floor <= 0 or math.isnan(figure) or math.isnan(floor):
        return None
    return figure / floor


# --- bounded loops ---------------------------------------------------------------------------


class Budget:
    """At most `count` iterations and at most `seconds` of wall time, whichever ends first."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count = count
        self.seconds = seconds
        self.started = time.monotonic()
        self.done = 0

    def __iter__(self) -> Iterator[int]:
        while self.done < self.count and not self.expired:
            yield self.done
            self.done += 1

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.started >= self.seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - (time.monotonic() - self.started))


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No garbage collection in this process while a timed phase runs.

    The load generator and the WebSocket clients share this process; a collection of its
    tens of thousands of request objects stalls every client at once for up to 100 ms, which
    read as the service's tail (an open loop at 1,150/s against the bare uvicorn floor: p99
    9.5-12.4 ms with collections, 1.5 ms without). Phases are bounded, so memory is too.
    """
    if not gc.isenabled():  # inside an outer quiet phase: it collects when it ends
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


async def paced(total: int, rate: float) -> AsyncIterator[tuple[int, float]]:
    """0 .. total-1 at `rate` per second, each with its scheduled `perf_counter` time.

    An open loop: the next one is due on schedule however slowly the last is answered, and
    latency counted from the scheduled time does not hide a stall by sending less.
    """
    begin = time.perf_counter()
    for index in range(total):
        scheduled = begin + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield index, scheduled


# --- the process and the machine -------------------------------------------------------------


def raise_open_files(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `needed` (children inherit it); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    pages = Path(f"/proc/{pid}/statm").read_text().split()[1]
    return int(pages) * _PAGE_SIZE


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (uv runs the service's python as its child)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        current = queue.pop()
        for child in children.get(current, []):
            found.append(child)
            queue.append(child)
    return found


def python_pid(pid: int) -> int:
    """The process doing the work: the first one below `uv run` that is not uv itself."""
    for candidate in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{candidate}/comm").read_text().strip() != "uv":
                return candidate
    return pid


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    changed = "unknown"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "libs", "services"],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        changed = f"{len(status)} uncommitted files in libs/ and services/" if status else "clean"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "nproc": str(os.cpu_count()),
        "memory": memory,
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load average at start": load,
        "commit": commit,
        "working tree": changed,
    }


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds passed; returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
