"""Pytest plugin shared by every package's tests: real infrastructure, isolated per run.

- PostgreSQL: a database of its own (created, migrated, dropped) on `TEST_POSTGRES_URL`
  [postgresql://postgres@127.0.0.1:5432/postgres].
- RabbitMQ: a vhost of its own on `TEST_RABBITMQ_URL` [amqp://guest:guest@127.0.0.1:5672/],
  created through the management API when it answers, else with `rabbitmqctl`.
- DynamoDB and S3: the project's local servers (dynalite, s3rver from deploy/local), started
  on free loopback ports with a temporary data folder and stopped at the end.

Where PostgreSQL or RabbitMQ do not answer and a Docker engine does, testcontainers starts
them; otherwise the run stops at once, naming the variable to set. Only imported by pytest.
"""

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db import make_engine, make_sessionmaker
from common.models import Base
from common.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[4]
LOCAL_AWS = REPO_ROOT / "deploy" / "local"
TEST_JWT_SECRET = "test-jwt-secret-" + "x" * 32


@dataclass(frozen=True)
class Infrastructure:
    postgres_url: str  # plain libpq URL of the test database
    rabbitmq_url: str  # amqp URL of the test vhost
    dynamodb_url: str
    s3_url: str
    run_id: str


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


def _resolve_postgres(stack: contextlib.ExitStack) -> str:
    url = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    if _reachable(url, 5432):
        return url
    if "TEST_POSTGRES_URL" not in os.environ and _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = stack.enter_context(PostgresContainer("postgres:16", driver=None))
        return str(container.get_connection_url())
    pytest.exit(f"PostgreSQL does not answer at {url}: set TEST_POSTGRES_URL", returncode=3)


def _resolve_rabbitmq(stack: contextlib.ExitStack) -> str:
    url = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    if _reachable(url, 5672):
        return url
    if "TEST_RABBITMQ_URL" not in os.environ and _docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        container = stack.enter_context(RabbitMqContainer("rabbitmq:3.13-management"))
        params = container.get_connection_params()
        return f"amqp://guest:guest@{params.host}:{params.port}/"
    pytest.exit(f"RabbitMQ does not answer at {url}: set TEST_RABBITMQ_URL", returncode=3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port}")


def _start_node_server(stack: contextlib.ExitStack, name: str, args: list[str]) -> str:
    binary = LOCAL_AWS / "node_modules" / ".bin" / name
    if not binary.exists():
        pytest.exit(f"{binary} is missing: run `make install`", returncode=3)
    port = _free_port()
    data = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"chat-sync-{name}-"))
    command = [str(binary), *(arg.format(port=port, data=data) for arg in args)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    stack.callback(_stop, process)
    _wait_for_port(port, process, name)
    return f"http://127.0.0.1:{port}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _create_vhost(amqp_url: str, vhost: str) -> None:
    parts = urlsplit(amqp_url)
    user, password = parts.username or "guest", parts.password or "guest"
    management = f"http://{parts.hostname}:15672/api"
    try:
        with httpx.Client(auth=(user, password), timeout=5) as client:
            client.put(f"{management}/vhosts/{quote(vhost, safe='')}").raise_for_status()
            client.put(
                f"{management}/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()
            return
    except httpx.HTTPError:
        pass
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.exit("cannot create a RabbitMQ vhost: enable the management plugin", returncode=3)
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [ctl, "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )


def _delete_vhost(amqp_url: str, vhost: str) -> None:
    parts = urlsplit(amqp_url)
    user, password = parts.username or "guest", parts.password or "guest"
    with contextlib.suppress(httpx.HTTPError), httpx.Client(auth=(user, password), timeout=5) as c:
        if c.delete(f"http://{parts.hostname}:15672/api/vhosts/{quote(vhost, safe='')}").is_success:
            return
    ctl = shutil.which("rabbitmqctl")
    if ctl:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], check=False, capture_output=True)  # noqa: S603


async def _create_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[Infrastructure]:
    run_id = uuid.uuid4().hex[:10]
    with contextlib.ExitStack() as stack:
        admin_url = _resolve_postgres(stack)
        database = f"chat_sync_test_{run_id}"
        asyncio.run(_create_database(admin_url, database))
        stack.callback(lambda: asyncio.run(_drop_database(admin_url, database)))

        amqp_url = _resolve_rabbitmq(stack)
        vhost = f"chat_sync_test_{run_id}"
        _create_vhost(amqp_url, vhost)
        stack.callback(_delete_vhost, amqp_url, vhost)

        dynamodb_url = _start_node_server(
            stack,
            "dynalite",
            [
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--path",
                "{data}",
                "--createTableMs",
                "0",
                "--deleteTableMs",
                "0",
            ],
        )
        s3_url = _start_node_server(
            stack,
            "s3rver",
            ["--address", "127.0.0.1", "--port", "{port}", "--directory", "{data}", "--silent"],
        )
        yield Infrastructure(
            postgres_url=_with_path(admin_url, "/" + database),
            rabbitmq_url=_with_path(amqp_url, "/" + quote(vhost, safe="")),
            dynamodb_url=dynamodb_url,
            s3_url=s3_url,
            run_id=run_id,
        )


def settings_for(infrastructure: Infrastructure, **overrides: object) -> Settings:
    """Settings pointing at this run's isolated resources, with test secrets."""
    values: dict[str, object] = {
        "debug": True,
        "database_url": infrastructure.postgres_url,
        "rabbitmq_url": infrastructure.rabbitmq_url,
        "aws_endpoint_url_dynamodb": infrastructure.dynamodb_url,
        "aws_endpoint_url_s3": infrastructure.s3_url,
        "dynamodb_messages_table": f"chat_sync_test_messages_{infrastructure.run_id}",
        "s3_bucket": f"chat-sync-test-{infrastructure.run_id}",
        "telegram_bot_token": "7000000001:TEST-token-that-is-not-real-00000000000",
        "telegram_webhook_secret": "test-webhook-secret",
        "auth_jwt_secret": TEST_JWT_SECRET,
        "admin_password": "test-admin-password",
        "admin_session_secret": "test-session-secret-" + "y" * 32,
        "external_api_token": "test-external-token",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def private_vhost(infrastructure: Infrastructure) -> Iterator[str]:
    """An AMQP URL of a vhost no other test shares, for tests about what is (not) bound."""
    parts = urlsplit(infrastructure.rabbitmq_url)
    vhost = f"chat_sync_test_{infrastructure.run_id}_{uuid.uuid4().hex[:6]}"
    base = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    _create_vhost(base, vhost)
    yield _with_path(base, "/" + quote(vhost, safe=""))
    _delete_vhost(base, vhost)


@pytest.fixture(scope="session", autouse=True)
def _aws_test_credentials() -> None:
    # s3rver accepts only this key pair; dynalite accepts any. Never real credentials.
    os.environ["AWS_ACCESS_KEY_ID"] = "S3RVER"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "S3RVER"  # noqa: S105
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def settings(infrastructure: Infrastructure) -> Settings:
    return settings_for(infrastructure)


@pytest.fixture(scope="session")
def migrated_database(settings: Settings) -> str:
    """Apply the Alembic history once per run (in a thread: Alembic runs its own loop)."""
    from alembic import command

    from common.migrate import alembic_config

    config = alembic_config(settings.sqlalchemy_url)
    command.upgrade(config, "head")
    return settings.sqlalchemy_url


@pytest.fixture(scope="session")
async def engine(settings: Settings, migrated_database: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(settings, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
async def clean_database(engine: AsyncEngine) -> None:
    """Empty every table before the test: handlers commit, so rollback isolation won't do."""
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


async def settled_readiness(client: httpx.AsyncClient, *, within: float = 10.0) -> httpx.Response:
    """`/readyz/` once it answers 200, or its last answer after `within` seconds.

    A probe is polled in production too: one slow dependency round trip on a loaded machine
    (each check has a 2 s bound) is a 503 for that poll, not a broken service.
    """
    deadline = time.monotonic() + within
    while True:
        answer = await client.get("/readyz/")
        if answer.status_code == 200 or time.monotonic() >= deadline:
            return answer
        await asyncio.sleep(0.1)
