"""Batch sync inside a worker process: the API client, the runner and its scan.

Wiring (the service's lifespan): `broker.include_router(batch.consumer.router)` before the
broker starts, add `batch.consumer.QUEUES` to `declare_topology`, and run the broker inside
`async with batch_sync(settings, broker, sessions, dynamo):`, which puts the runner into the
broker's context (the subscriber needs it) and keeps the lease takeover / lost-command scan
running until the block ends, when the run in progress hands its lease back.
"""

import asyncio
import contextlib
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


def runner_config(settings: Settings) -> RunnerConfig:
    """SYNC_LEASE_SECONDS, SYNC_SCAN_SECONDS, SYNC_PENDING_GRACE_SECONDS."""
    return RunnerConfig(
        lease_seconds=settings.sync_lease_seconds,
        scan_seconds=settings.sync_scan_seconds,
        pending_grace_seconds=settings.sync_pending_grace_seconds,
    )


def external_api(settings: Settings) -> ExternalApi:
    """EXTERNAL_API_URL and EXTERNAL_API_TOKEN, with the EXTERNAL_API_* tuning settings."""
    return ExternalApi(
        settings.external_api_url,
        settings.external_api_token.get_secret_value(),
        timeout=settings.external_api_timeout,
        retry=RetryPolicy(
            attempts=settings.external_api_attempts,
            backoff_base=settings.external_api_backoff,
        ),
        concurrency=settings.external_api_concurrency,
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
    client = api or external_api(settings)
    deps = Deps(
        sessions=sessions,
        dynamo=dynamo,
        table=settings.dynamodb_messages_table,
        api=client,
        publish=partial(publish_event, broker, timeout=settings.publish_confirm_timeout),
        page_size=settings.sync_page_size,
        message_page_size=settings.sync_message_page_size,
    )
    runner = Runner(deps, config or runner_config(settings))
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
