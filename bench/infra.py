"""The benchmark's own resources, isolated like the tests': database `chat_sync_bench` (created
and migrated), RabbitMQ vhost `chat_sync_bench` (recreated per run), dynalite and s3rver on free
loopback ports with temporary data. Services are started with their `deploy/Procfile` commands
and environment variables only, and stopped with SIGTERM.
"""

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg

from bench.harness import LOOPBACK, REPO_ROOT, NotMeasured, python_pid
from common import broker_policy, testing
from common.dynamo import dynamodb_client, ensure_messages_table
from common.migrate import alembic_config
from common.s3 import ensure_bucket, s3_client
from common.settings import Settings

NAME = "chat_sync_bench"
WEBHOOK_SECRET = "bench-webhook-secret"
JWT_SECRET = "bench-jwt-secret-" + "b" * 32
BOT_TOKEN = "7000000001:BENCH-token-that-is-not-real-000000000"
EXTERNAL_TOKEN = "bench-external-token"
SERVICE_SCRIPTS = (
    "telegram-ingest",
    "gateway",
    "realtime",
    "sync-worker",
    "avatar-worker",
    "external-api-dev",
)


@dataclass
class Stack:
    admin_url: str
    postgres_url: str
    rabbitmq_url: str
    dynamodb_url: str
    s3_url: str
    logs: Path
    table: str = NAME + "_messages"
    bucket: str = "chat-sync-bench"
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a service process: common.settings names only."""
        values = {
            # Production's configuration: the secrets below are not well-known ones.
            "DEBUG": "false",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
            "BIND_HOST": LOOPBACK,
            "DATABASE_URL": self.postgres_url,
            "RABBITMQ_URL": self.rabbitmq_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_url,
            "AWS_ENDPOINT_URL_S3": self.s3_url,
            "AWS_ACCESS_KEY_ID": "S3RVER",
            "AWS_SECRET_ACCESS_KEY": "S3RVER",
            "AWS_REGION": "us-east-1",
            "DYNAMODB_MESSAGES_TABLE": self.table,
            "S3_BUCKET": self.bucket,
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "AUTH_JWT_SECRET": JWT_SECRET,
            "ADMIN_PASSWORD": "bench-admin-password",
            "ADMIN_SESSION_SECRET": "bench-session-secret-" + "s" * 32,
            "EXTERNAL_API_TOKEN": EXTERNAL_TOKEN,
            **self.extra_env,
            **overrides,
        }
        inherited = {
            key: value
            for key, value in os.environ.items()
            if key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "UV_CACHE_DIR", "VIRTUAL_ENV")
        }
        return {**inherited, **values}

    def settings(self) -> Settings:
        return Settings.model_validate(
            {
                "debug": True,
                "database_url": self.postgres_url,
                "rabbitmq_url": self.rabbitmq_url,
                "aws_endpoint_url_dynamodb": self.dynamodb_url,
                "aws_endpoint_url_s3": self.s3_url,
                "dynamodb_messages_table": self.table,
                "s3_bucket": self.bucket,
            }
        )


@contextlib.contextmanager
def provisioned() -> Iterator[Stack]:
    """Everything the benchmarks talk to; the database is kept (seeds are reused), the rest not."""
    os.environ["AWS_ACCESS_KEY_ID"] = "S3RVER"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "S3RVER"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    amqp_url = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    with contextlib.ExitStack() as stack:
        if not testing._reachable(admin_url, 5432):
            raise SystemExit(f"PostgreSQL does not answer at {admin_url}: set BENCH_POSTGRES_URL")
        if not testing._reachable(amqp_url, 5672):
            raise SystemExit(f"RabbitMQ does not answer at {amqp_url}: set BENCH_RABBITMQ_URL")
        asyncio.run(_ensure_database(admin_url, NAME))
        postgres_url = testing._with_path(admin_url, "/" + NAME)
        alembic_upgrade(postgres_url)

        # Two runs at once (say, one per service being tuned) need a vhost each.
        vhost = os.environ.get("BENCH_VHOST", NAME)
        testing._delete_vhost(amqp_url, vhost)
        testing._create_vhost(amqp_url, vhost)
        stack.callback(testing._delete_vhost, amqp_url, vhost)
        vhost_url = testing._with_path(amqp_url, "/" + quote(vhost, safe=""))
        broker_policy.apply_on_this_machine(vhost_url)  # as `make run` and compose run it

        dynamodb_url = testing._start_node_server(
            stack,
            "dynalite",
            [
                *("--host", LOOPBACK, "--port", "{port}", "--path", "{data}"),
                *("--createTableMs", "0", "--deleteTableMs", "0"),
            ],
        )
        s3_url = testing._start_node_server(
            stack,
            "s3rver",
            ["--address", LOOPBACK, "--port", "{port}", "--directory", "{data}", "--silent"],
        )
        # Service logs are kept after the run, for whoever reads a "not measured" reason.
        logs = Path(tempfile.mkdtemp(prefix="chat-sync-bench-logs-"))
        result = Stack(
            admin_url=admin_url,
            postgres_url=postgres_url,
            rabbitmq_url=vhost_url,
            dynamodb_url=dynamodb_url,
            s3_url=s3_url,
            logs=logs,
        )
        asyncio.run(_ensure_aws(result))
        yield result


def alembic_upgrade(url: str) -> None:
    """Apply the one Alembic history (idempotent); outside any running event loop."""
    from alembic import command

    sqlalchemy_url = Settings.model_validate({"database_url": url}).sqlalchemy_url
    command.upgrade(alembic_config(sqlalchemy_url), "head")


async def _ensure_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _ensure_aws(stack: Stack) -> None:
    settings = stack.settings()
    async with dynamodb_client(settings) as client:
        await ensure_messages_table(client, stack.table)
    async with s3_client(settings) as client:
        await ensure_bucket(client, stack.bucket, settings.aws_region)


# --- service processes -----------------------------------------------------------------------


class Service:
    """One service started through its console script, as `deploy/Procfile` starts it."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        *,
        port: int | None,
        logs: Path,
        ready_path: str = "/readyz",
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.port = port
        self.ready_path = ready_path
        self.log_path = logs / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return python_pid(self.process.pid)

    async def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            await self._wait_ready(timeout)
        except NotMeasured:
            await self.stop()
            raise

    async def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        if self.port is None:  # nothing to ask: alive after a few seconds is ready
            await asyncio.sleep(3)
            if self.process.returncode is not None:
                raise NotMeasured(
                    f"{self.name} exited with {self.process.returncode}: {self.tail()}"
                )
            return
        deadline = asyncio.get_running_loop().time() + timeout
        url = f"http://{LOOPBACK}:{self.port}{self.ready_path}"
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.returncode is not None:
                    raise NotMeasured(
                        f"{self.name} exited with {self.process.returncode}: {self.tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise NotMeasured(
                        f"{self.name} not ready within {timeout:.0f} s: {self.tail()}"
                    )
                await asyncio.sleep(0.2)

    def tail(self, lines: int = 3) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(line[:200] for line in text[-lines:]) or "no output"
        return "no output"

    async def stop(self, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        # uvicorn re-raises the signal it stopped on; pyinstrument writes its report on
        # KeyboardInterrupt but not on SIGTERM, so a profiled service gets SIGINT.
        profiled = "pyinstrument" in self.argv
        stop_signal = signal.SIGINT if profiled else signal.SIGTERM
        timeout = 180.0 if profiled else timeout  # rendering a long profile takes a while
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(stop_signal)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


def script(name: str, *args: str) -> list[str]:
    """The console script, or a profiled run of its module with `BENCH_PROFILE=<dir>`."""
    profile_dir = os.environ.get("BENCH_PROFILE")
    if profile_dir and name in _MODULES:
        tag = os.environ.get("BENCH_CURRENT", "run")
        # `pyisession` keeps the whole session for `pyinstrument --load` with other options.
        renderer = os.environ.get("BENCH_PROFILE_RENDERER", "text")
        suffix = {"text": "txt", "pyisession": "pyisession"}.get(renderer, renderer)
        report = str(Path(profile_dir) / f"{tag}-{name}.{suffix}")
        return [
            "uv",
            "run",
            "--frozen",
            "pyinstrument",
            "-r",
            renderer,
            "-o",
            report,
            "-m",
            _MODULES[name],
            *args,
        ]
    return [*procfile_command(name), *args]


def procfile_command(name: str) -> list[str]:
    """The command `deploy/Procfile` runs the console script `name` with (the workers with
    less CPU weight than the latency path), so services share the cores as `make run` has
    them share; plain `uv run --frozen <name>` for a script it does not list."""
    for line in (REPO_ROOT / "deploy" / "Procfile").read_text().splitlines():
        _, separator, command = line.partition(":")
        words = shlex.split(command) if separator and not line.startswith("#") else []
        if words[-2:] == ["--frozen", name]:
            return words
    return ["uv", "run", "--frozen", name]


_MODULES = {
    "telegram-ingest": "telegram_ingest",
    "gateway": "gateway",
    "realtime": "realtime",
    "sync-worker": "sync_worker",
}


def free_port() -> int:
    return testing._free_port()


@dataclass(frozen=True)
class Config:
    """One run: the resources, the size (full or `--quick`) and the fake Bot API."""

    stack: Stack
    quick: bool
    bot_api_url: str

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def seconds(self, full: float, quick: float) -> float:
        return quick if self.quick else full

    def service(self, name: str, *args: str, port: int | None, **env: str) -> Service:
        """A service on `port` (its *_PORT setting), with the fake Bot API."""
        environment = self.stack.env(TELEGRAM_API_URL=self.bot_api_url, **env)
        return Service(name, script(name, *args), environment, port=port, logs=self.stack.logs)


async def scrape(port: int) -> dict[str, float]:
    """A service's `/metrics` now: each sample (`name{labels}`) and its value."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{LOOPBACK}:{port}/metrics") as response,
    ):
        text = await response.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            samples[sample] = float(value)
    return samples


def summed(samples: Mapping[str, float], name: str) -> float:
    """A metric's value, summed over its labels."""
    return sum(value for sample, value in samples.items() if sample.split("{", 1)[0] == name)


def by_label(samples: Mapping[str, float], name: str, label: str) -> dict[str, float]:
    """A metric's values by one label's value (a histogram's buckets: `_bucket`, `le`)."""
    found: dict[str, float] = {}
    marker = f'{label}="'
    for sample, value in samples.items():
        if sample.startswith(name + "{") and marker in sample:
            key = sample.split(marker, 1)[1].split('"', 1)[0]
            found[key] = found.get(key, 0.0) + value
    return found
