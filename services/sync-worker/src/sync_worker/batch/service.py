"""Batch sync inside a worker process: the API client, the runner and its scan.

Wiring (the service's lifespan): `broker.include_router(batch.consumer.router)` before the
broker starts, add `batch.consumer.QUEUES` to `declare_topology`, and run the broker inside
`async with batch_sync(settings, broker, sessions, dynamo):`, which puts the runner into the
broker's context (the subscriber needs it) and keeps the lease takeover / lost-command scan
running until the block ends, when the run in progress hands its lease back.
"""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.bus import publish_event
from common.settings import Settings
from sync_worker.batch.client import ExternalApi, RetryPolicy
from sync_worker.batch.consumer import RUNNER_CONTEXT
from sync_worker.batch.deps import Deps
from sync_worker.batch.runner import Runner, RunnerConfig

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


def config_from_env() -> RunnerConfig:
    """Tuning knobs (not settings a user needs): SYNC_LEASE_SECONDS [30], SYNC_SCAN_SECONDS
    [10], SYNC_PENDING_GRACE_SECONDS [15]."""
    return RunnerConfig(
        lease_seconds=float(os.environ.get("SYNC_LEASE_SECONDS", "30")),
        scan_seconds=float(os.environ.get("SYNC_SCAN_SECONDS", "10")),
        pending_grace_seconds=float(os.environ.get("SYNC_PENDING_GRACE_SECONDS", "15")),
    )


def api_from_env(settings: Settings) -> ExternalApi:
    """EXTERNAL_API_URL / EXTERNAL_API_TOKEN, plus EXTERNAL_API_TIMEOUT [30] seconds,
    EXTERNAL_API_ATTEMPTS [6], EXTERNAL_API_BACKOFF [0.5] seconds, EXTERNAL_API_CONCURRENCY [8]."""
    return ExternalApi(
        settings.external_api_url,
        settings.external_api_token.get_secret_value(),
        timeout=float(os.environ.get("EXTERNAL_API_TIMEOUT", "30")),
        retry=RetryPolicy(
            attempts=int(os.environ.get("EXTERNAL_API_ATTEMPTS", "6")),
            backoff_base=float(os.environ.get("EXTERNAL_API_BACKOFF", "0.5")),
        ),
        concurrency=int(os.environ.get("EXTERNAL_API_CONCURRENCY", "8")),
    )


@asynccontextmanager
async def batch_sync(
    settings: Settings,
    broker: RabbitBroker,
    sessions: async_sessionmaker[AsyncSession],
    dynamo: "DynamoDBClient",
    *,
    config: RunnerConfig | None = None,
    api: ExternalApi | None = None,
) -> AsyncIterator[Runner]:
    client = api or api_from_env(settings)
    deps = Deps(
        sessions=sessions,
        dynamo=dynamo,
        table=settings.dynamodb_messages_table,
        api=client,
        publish=partial(publish_event, broker, timeout=settings.publish_confirm_timeout),
        page_size=int(os.environ.get("SYNC_PAGE_SIZE", "20")),
        message_page_size=int(os.environ.get("SYNC_MESSAGE_PAGE_SIZE", "100")),
    )
    runner = Runner(deps, config or config_from_env())
    broker.context.set_global(RUNNER_CONTEXT, runner)
    scan = asyncio.create_task(runner.scan_forever(), name="sync-scan")
    try:
        yield runner
    finally:
        scan.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scan
        await runner.stop()
        if api is None:
            await client.aclose()
