"""Results on disk: bench/results/<date>.md and .json, and the latest table in
docs/benchmarks.md with the machine it ran on and the command that made it."""

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import REPO_ROOT, Row

RESULTS = REPO_ROOT / "bench" / "results"
DOC = REPO_ROOT / "docs" / "benchmarks.md"

_INTRO = """\
# Benchmarks

Every hot path of Chat Sync against its raw floor, measured in the same run on the same
machine, side by side and as a ratio: absolute times drift on shared 2-core machines, the
ratio to a floor measured minutes apart drifts much less. This table is the one source of the
speed targets named in the service issues.

- `make bench` (or `uv run python -m bench`): everything, about 15 minutes.
- `uv run python -m bench --quick`: smaller sizes (100k deals, 2,000 connections, …), about
  3 minutes. `uv run python -m bench deals fanout`: some benchmarks.
- `uv run python -m bench --profile DIR ingest`: the same, with each service run under
  pyinstrument; one text report per benchmark and service in DIR.
- Results: `bench/results/<date>.md` and `.json` (every raw figure, per depth, per rate).

How each row is measured is in the docstring of its module in `bench/` (`ingest.py`,
`e2e.py`, `persistence.py`, `deals.py`, `fanout.py`, `connections.py`, `batch.py`).
Services are started with the commands of `deploy/Procfile` (the sync-worker and the avatar
worker with less CPU weight than the latency path, as `make run` starts them), with
environment variables only, against the benchmark's own database `chat_sync_bench` (migrated
at start), RabbitMQ vhost `chat_sync_bench` (recreated per run), and a dynalite and s3rver
started on free loopback ports with temporary data. All traffic stays on 127.0.0.1; a small
fake Bot API on loopback answers the few Bot API calls. Service logs of a run stay in the
temporary folder printed at its end.

Read the figures with these in mind:

- The load generator (aiohttp) and the WebSocket clients run in the benchmark's own Python
  process, on the same two cores as the services, RabbitMQ, PostgreSQL and dynalite. The
  bare-uvicorn floor is as fast as this generator can drive it; end-to-end latencies include
  the benchmark process's own event-loop delays.
- Services run as in production: `DEBUG=false`, logs at INFO, uvicorn access lines where
  production writes them (the gateway; telegram-ingest counts its answers in `/metrics`
  instead). `BENCH_LOG_LEVEL=WARNING` shows what logging costs.
- DynamoDB is dynalite (Node, LevelDB): every call costs far more than on DynamoDB, for the
  services and their floors alike, so calls per message matter more here than they would
  in production.
- The 1.1M-deal seed is kept in `chat_sync_bench` and reused while its count matches
  (`"seeded": false` in the JSON); `uv run python -m bench.seed_deals --count N` reseeds.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| what | Chat Sync figure | raw floor in the same run | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        share = "—" if row.ratio is None else f"{row.ratio:.2f}"
        if row.passed is None:
            verdict = "not measured" if row.figure.startswith("not measured") else "—"
        else:
            verdict = "**met**" if row.passed else "**missed**"
        if row.note:
            verdict += f" ({row.note})"
        lines.append(
            f"| {_cell(row.what)} | {_cell(row.figure)} | {_cell(row.floor)} | {share} "
            f"| {_cell(row.target)} | {_cell(verdict)} |"
        )
    return "\n".join(lines)


def markdown(
    rows: Sequence[Row], facts: dict[str, str], command: str, started: datetime, minutes: float
) -> str:
    machine = "\n".join(f"- {key}: {value}" for key, value in facts.items())
    return (
        f"## Run of {started:%Y-%m-%d %H:%M} UTC ({minutes:.1f} min)\n\n"
        f"Command: `{command}`\n\n{machine}\n\n{table(rows)}\n"
    )


def write(
    rows: Sequence[Row],
    facts: dict[str, str],
    command: str,
    started: datetime,
    minutes: float,
    extra: dict[str, Any],
    *,
    partial: str | None = None,
) -> Path:
    """A run of every benchmark is `<date>` and refreshes the doc; a run of some is
    `<date>-<names>` and leaves the doc's full table alone."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / (f"{started:%Y-%m-%d}" + (f"-{partial}" if partial else ""))
    body = markdown(rows, facts, command, started, minutes)
    stem.with_suffix(".md").write_text(f"# Benchmark results {started:%Y-%m-%d}\n\n{body}")
    document = {
        "started": started.isoformat(),
        "minutes": round(minutes, 2),
        "command": command,
        "machine": facts,
        "rows": [row.as_json() for row in rows],
        **extra,
    }
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    if partial is None:
        DOC.write_text(f"{_INTRO}\n{body}\n{_notes_section()}")
    return stem.with_suffix(".md")


def _notes_section() -> str:
    """Findings written by hand in docs/benchmarks.md after the marker line are kept."""
    marker = "<!-- notes: kept across runs -->"
    if DOC.exists():
        text = DOC.read_text()
        if marker in text:
            return text[text.index(marker) :]
    return f"{marker}\n"
