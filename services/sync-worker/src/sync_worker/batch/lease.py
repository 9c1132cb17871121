"""Who may work on a sync run: a lease row with an expiry and a fencing token.

Why a lease row and not an advisory lock: an advisory lock lives as long as one database
connection, so a run would pin a pooled connection for hours, break behind a transaction-mode
pooler, and still not stop a holder that was paused (GC, partition) while its session died and
another worker took over: its later writes through other connections would go through. A lease
is plain data: `claim` sets `lease_owner`, `lease_expires_at` and a new `fencing_token` in one
conditional UPDATE (so of two racing workers exactly one wins), the holder renews it on a
heartbeat, and every checkpoint write locks the run row *with the token it holds* (`fenced`)
in the same transaction as the data it checkpoints. A holder that was taken over finds the
token changed, raises `LeaseLost` and rolls back; nothing it did after losing the lease commits.
A holder that dies simply stops renewing; after `lease_expires_at` any worker may claim.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import transaction
from common.models import SyncRun

ACTIVE = ("pending", "running")


class LeaseLost(RuntimeError):
    """Another worker holds the run now (or it was ended): stop without writing."""


@dataclass(frozen=True)
class Lease:
    run_id: uuid.UUID
    owner: str
    token: int
    seconds: float


def _expired() -> Any:
    return or_(SyncRun.lease_expires_at.is_(None), SyncRun.lease_expires_at < func.now())


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    run_id: uuid.UUID,
    owner: str,
    seconds: float,
    *,
    max_date: datetime | None = None,
) -> Lease | None:
    """Take a pending run, or a running one whose lease expired; None when someone has it.

    `max_date` (from the command) fills in a run stored without one."""
    async with transaction(sessions) as session:
        token = await session.scalar(
            update(SyncRun)
            .where(
                SyncRun.id == run_id,
                or_(SyncRun.status == "pending", and_(SyncRun.status == "running", _expired())),
            )
            .values(
                status="running",
                lease_owner=owner,
                lease_expires_at=func.now() + timedelta(seconds=seconds),
                fencing_token=SyncRun.fencing_token + 1,
                started_at=func.coalesce(SyncRun.started_at, func.now()),
                updated_at=func.now(),
            )
            .returning(SyncRun.fencing_token)
        )
        if token is None:
            return None
        if token == 1:
            await _prepare(session, run_id, max_date)
        return Lease(run_id, owner, int(token), seconds)


async def _prepare(session: AsyncSession, run_id: uuid.UUID, max_date: datetime | None) -> None:
    """First claim: link a run started after a failed one to it, copy its checkpoint, and
    decide whether this is an initial or an incremental run."""
    run = await session.get_one(SyncRun, run_id, populate_existing=True)
    if run.max_date is None and max_date is not None:
        run.max_date = as_utc(max_date)
    if run.resumed_from is None:
        latest = await session.scalar(
            select(SyncRun)
            .where(SyncRun.id != run.id, SyncRun.created_at <= run.created_at)
            .order_by(SyncRun.created_at.desc(), SyncRun.id.desc())
            .limit(1)
        )
        if latest is not None and latest.status == "failed":
            run.resumed_from = latest.id
    source = await session.get(SyncRun, run.resumed_from) if run.resumed_from else None
    if source is not None and not run.checkpoint and run.cursor is None:
        run.cursor = source.cursor
        run.page_position = source.page_position
        run.chat_cursor = source.chat_cursor
        # The new run retries the failed chats first, then walks on from the saved position.
        run.checkpoint = {**source.checkpoint, "phase": "retry", "retry_done": []}
        run.kind = source.kind
        if run.max_date is None:
            run.max_date = source.max_date
    if run.kind is None:
        completed = await session.scalar(select(exists().where(SyncRun.status == "completed")))
        run.kind = "incremental" if completed else "initial"


async def renew(sessions: async_sessionmaker[AsyncSession], lease: Lease) -> bool:
    async with transaction(sessions) as session:
        renewed = await session.scalar(
            update(SyncRun)
            .where(*_held(lease))
            .values(lease_expires_at=func.now() + timedelta(seconds=lease.seconds))
            .returning(SyncRun.id)
        )
        return renewed is not None


async def release(sessions: async_sessionmaker[AsyncSession], lease: Lease) -> None:
    """Give the run up at once (graceful shutdown): another worker continues it."""
    async with transaction(sessions) as session:
        await session.execute(
            update(SyncRun).where(*_held(lease)).values(lease_expires_at=func.now())
        )


async def fenced(session: AsyncSession, lease: Lease) -> SyncRun:
    """Lock the run row if this lease still holds it; every checkpoint write starts here."""
    run = await session.scalar(
        select(SyncRun)
        .where(*_held(lease))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if run is None:
        raise LeaseLost(f"sync run {lease.run_id}: lease {lease.token} is no longer held")
    return run


async def update_run(session: AsyncSession, lease: Lease, values: dict[str, Any]) -> None:
    """Write the run's counters and checkpoint if this lease still holds it (one statement,
    in the caller's transaction: a taken-over holder rolls back everything with it)."""
    updated = await session.scalar(
        update(SyncRun)
        .where(*_held(lease))
        .values(**values, updated_at=func.now())
        .returning(SyncRun.id)
    )
    if updated is None:
        raise LeaseLost(f"sync run {lease.run_id}: lease {lease.token} is no longer held")


def checkpoint_merge(base: Any, key: str, value: Any) -> Any:
    """`base || {key: value}` for the JSONB checkpoint."""
    return base.op("||", return_type=JSONB)(func.jsonb_build_object(key, literal(value, JSONB)))


def checkpoint_without(base: Any, key: str) -> Any:
    return base.op("-", return_type=JSONB)(key)


async def finish(
    sessions: async_sessionmaker[AsyncSession],
    lease: Lease,
    status: str,
    error: str | None = None,
) -> SyncRun:
    async with transaction(sessions) as session:
        run = await fenced(session, lease)
        run.status = status
        run.error = error
        run.finished_at = func.now()
        run.lease_owner = None
        run.lease_expires_at = None
        run.chat_cursor = None
        await session.flush()
        await session.refresh(run)
        return run


def as_utc(moment: datetime) -> datetime:
    """A cutoff without an offset (a date alone, `2025-01-01`) means UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _held(lease: Lease) -> tuple[Any, ...]:
    return (
        SyncRun.id == lease.run_id,
        SyncRun.fencing_token == lease.token,
        SyncRun.status == "running",
    )
