"""Starting a run: the row and its `sync.start` command commit together, then publish.

One active run is guaranteed by the partial unique index `uq_sync_run_active`, not by a
read-then-write check: a second insert fails, and only then we read which run is active.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import SyncStart
from common.models import SyncRun
from gateway.deps import Resources
from gateway.sync import outbox

log = structlog.get_logger(__name__)
ACTIVE = ("pending", "running")
_BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Started:
    task_id: uuid.UUID
    resumed_from: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Busy:
    task_id: uuid.UUID | None
    status: str


async def _insert(
    session: AsyncSession, max_date: datetime | None, requested_by: str | None
) -> tuple[Started, int]:
    async with session.begin():
        latest = await session.scalar(
            select(SyncRun).order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(1)
        )
        # A new start after a failed run resumes it, keeping its max_date unless given anew.
        resumed = latest if latest is not None and latest.status == "failed" else None
        if max_date is None and resumed is not None:
            max_date = resumed.max_date
        requester = int(requested_by) if requested_by is not None else None
        run = SyncRun(
            id=uuid.uuid4(),
            status="pending",
            max_date=max_date,
            resumed_from=resumed.id if resumed is not None else None,
            requested_by=requester if requester is not None and requester <= _BIGINT_MAX else None,
        )
        session.add(run)
        command = SyncStart(task_id=run.id, max_date=max_date, requested_by=requested_by)
        row = outbox.row_for(command)
        session.add(row)
        await session.flush()
        return Started(run.id, run.resumed_from), row.id


async def start(
    resources: Resources, max_date: datetime | None, requested_by: str | None
) -> Started | Busy:
    for _attempt in range(2):
        async with resources.sessions() as session:
            try:
                started, outbox_id = await _insert(session, max_date, requested_by)
            except IntegrityError:
                active = await session.scalar(select(SyncRun).where(SyncRun.status.in_(ACTIVE)))
                if active is not None:
                    return Busy(active.id, active.status)
                continue  # the active run ended in between: try once more
        try:
            await outbox.publish_pending(
                resources.sessions,
                resources.broker,
                timeout=resources.settings.publish_confirm_timeout,
                only_id=outbox_id,
            )
        except Exception as error:
            # Committed: the relay publishes it once the broker answers again.
            log.warning("sync.start left to the outbox relay", error=type(error).__name__)
        return started
    return Busy(None, "pending")
