"""The transactional outbox for commands: written with the business row, published after.

A request publishes its own row right after its commit; the relay publishes whatever is
still unpublished (a crash between commit and publish, a broker that was down), so an
accepted run always gets its command. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so
any number of gateways relay without publishing a row twice at the same time; a crash
after the publish and before the mark repeats it, and consumers dedupe by the event id.
"""

import asyncio
from datetime import UTC, datetime

import structlog
from faststream.rabbit import RabbitBroker
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.bus import COMMANDS, publish_command
from common.events import Command, command_adapter
from common.models import Outbox

log = structlog.get_logger(__name__)
BATCH = 100


def row_for(command: Command) -> Outbox:
    return Outbox(
        exchange=COMMANDS.name,
        routing_key=str(getattr(command, "type")),  # noqa: B009 - every command has one
        message_id=command.event_id,
        body=command.model_dump(mode="json"),
    )


async def publish_pending(
    sessions: async_sessionmaker[AsyncSession],
    broker: RabbitBroker,
    *,
    timeout: float,
    only_id: int | None = None,
) -> int:
    """Publish unpublished command rows (or just one); the number published."""
    query = (
        select(Outbox)
        .where(Outbox.published_at.is_(None), Outbox.exchange == COMMANDS.name)
        .order_by(Outbox.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    if only_id is not None:
        query = query.where(Outbox.id == only_id)
    published = 0
    async with sessions() as session, session.begin():
        for row in (await session.scalars(query)).all():
            try:
                command = command_adapter.validate_python(row.body)
            except ValidationError:
                log.error("outbox row is not a command", outbox_id=row.id)
                continue
            await publish_command(broker, command, timeout=timeout)
            row.published_at = datetime.now(UTC)
            published += 1
    return published


async def relay(
    sessions: async_sessionmaker[AsyncSession],
    broker: RabbitBroker,
    *,
    interval: float,
    timeout: float,
) -> None:
    """Runs until cancelled."""
    while True:
        try:
            count = await publish_pending(sessions, broker, timeout=timeout)
            if count:
                log.info("outbox relayed", count=count)
        except Exception as error:
            log.warning("outbox relay failed", error=type(error).__name__)
        await asyncio.sleep(interval)
