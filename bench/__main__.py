"""`python -m bench [--quick] [names...]`: run every benchmark (or the named ones), write
bench/results/<date>.md and .json, and refresh docs/benchmarks.md."""

import argparse
import asyncio
import importlib
import os
import shlex
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import uvloop

from bench import report, telegram
from bench.harness import NotMeasured, Row, machine_facts, not_measured, raise_open_files
from bench.infra import Config, Stack, provisioned

# Cheap and independent first; the deals seed (the slowest set-up) last.
BENCHMARKS = ("ingest", "persistence", "fanout", "connections", "batch", "e2e", "deals")
OPEN_FILES = 20_000


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"bench.{name}")


async def _run_one(module: ModuleType, config: Config, minutes: float) -> list[Row]:
    run: Callable[[Config], Awaitable[list[Row]]] = module.run
    try:
        async with asyncio.timeout(minutes * 60):
            return await run(config)
    except NotMeasured as error:
        return [not_measured(module.NAME, module.WHAT, module.TARGET, str(error))]
    except TimeoutError:
        reason = f"did not finish within {minutes:.0f} min"
        return [not_measured(module.NAME, module.WHAT, module.TARGET, reason)]
    except Exception as error:
        traceback.print_exc()
        reason = f"{type(error).__name__}: {error}"[:300]
        return [not_measured(module.NAME, module.WHAT, module.TARGET, reason)]


async def _run_all(names: list[str], stack: Stack, quick: bool) -> list[Row]:
    rows: list[Row] = []
    async with telegram.fake_bot_api() as bot_api_url:
        config = Config(stack=stack, quick=quick, bot_api_url=bot_api_url)
        for name in names:
            module = _module(name)
            os.environ["BENCH_CURRENT"] = name  # names profile reports after the benchmark
            print(f"[bench] {name} …", file=sys.stderr, flush=True)
            started = time.monotonic()
            found = await _run_one(module, config, minutes=4 if quick else 8)
            for row in found:
                print(f"[bench]   {row.what}: {row.figure} | floor {row.floor}", file=sys.stderr)
            print(f"[bench] {name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
            rows.extend(found)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="name", help=f"any of: {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 3 minutes")
    parser.add_argument(
        "--profile", metavar="DIR", help="run services under pyinstrument, reports into DIR"
    )
    parser.add_argument("--no-report", action="store_true", help="print only; write nothing")
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    names = [name for name in BENCHMARKS if name in arguments.names] or list(BENCHMARKS)
    if arguments.profile:
        Path(arguments.profile).mkdir(parents=True, exist_ok=True)
        os.environ["BENCH_PROFILE"] = str(Path(arguments.profile).resolve())

    limit = raise_open_files(OPEN_FILES)
    facts = machine_facts()
    facts["open files limit"] = str(limit)
    command = "uv run python -m bench" + "".join(
        f" {shlex.quote(arg)}" for arg in (argv if argv is not None else sys.argv[1:])
    )
    started = datetime.now(UTC)
    clock = time.monotonic()
    with provisioned() as stack:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            rows = runner.run(_run_all(names, stack, arguments.quick))
        logs = stack.logs
    minutes = (time.monotonic() - clock) / 60
    print(report.table(rows))
    print(f"\nservice logs: {logs}", file=sys.stderr)
    if not arguments.no_report:
        partial = None if names == list(BENCHMARKS) else "-".join(names)
        extra = {"names": names}
        written = report.write(rows, facts, command, started, minutes, extra, partial=partial)
        print(f"written: {written} (+ .json)", file=sys.stderr)


if __name__ == "__main__":
    main()
