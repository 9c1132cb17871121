"""A worker's side of batch sync: claim runs, drive one at a time, keep the lease alive.

Runs are claimed from the `sync.start` command and, as a fallback, by a periodic scan that
finds `pending` runs whose command was lost and `running` runs whose holder stopped renewing
its lease. The run itself executes in a task of its own, so the command is acknowledged at
once instead of being held unacknowledged for hours.
"""

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, func, or_, select

from common.models import SyncRun
from sync_worker.batch import lease as leases
from sync_worker.batch.client import UpstreamAuthError
from sync_worker.batch.deps import Deps
from sync_worker.batch.lease import Lease, LeaseLost
from sync_worker.batch.run import execute, progress

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunnerConfig:
    lease_seconds: float = 30.0
    scan_seconds: float = 10.0
    # A pending run younger than this is left to its command, which normally arrives first.
    pending_grace_seconds: float = 15.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Runner:
    def __init__(
        self, deps: Deps, config: RunnerConfig | None = None, *, owner: str | None = None
    ) -> None:
        self.deps = deps
        self.config = config or RunnerConfig()
        self.owner = owner or worker_name()
        self._task: asyncio.Task[None] | None = None
        self._lease: Lease | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, run_id: uuid.UUID, *, max_date: datetime | None = None) -> bool:
        """Claim the run and drive it in the background; False when it is not ours to run."""
        if self.busy:
            return False
        lease = await leases.claim(
            self.deps.sessions, run_id, self.owner, self.config.lease_seconds, max_date=max_date
        )
        if lease is None:
            return False
        log.info("sync run claimed", task_id=str(run_id), token=lease.token, owner=self.owner)
        self._lease = lease
        self._task = asyncio.create_task(self._drive(lease), name=f"sync-run-{run_id}")
        return True

    async def scan(self) -> bool:
        """Claim a run nobody is driving: a pending one whose command got lost, or a running
        one whose lease expired. True when one was claimed."""
        if self.busy:
            return False
        grace = timedelta(seconds=self.config.pending_grace_seconds)
        async with self.deps.sessions() as session:
            run_id = await session.scalar(
                select(SyncRun.id)
                .where(
                    or_(
                        and_(SyncRun.status == "pending", SyncRun.created_at < func.now() - grace),
                        and_(
                            SyncRun.status == "running",
                            or_(
                                SyncRun.lease_expires_at.is_(None),
                                SyncRun.lease_expires_at < func.now(),
                            ),
                        ),
                    )
                )
                .order_by(SyncRun.created_at)
                .limit(1)
            )
        return run_id is not None and await self.start(run_id)

    async def scan_forever(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception as error:  # the database may be away for a moment
                log.warning("sync scan failed", error=repr(error))
            await asyncio.sleep(self.config.scan_seconds)

    async def wait(self) -> None:
        """Until the run being driven ends (tests and shutdown)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop driving and hand the lease back at once, so another worker continues."""
        task, lease = self._task, self._lease
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if lease is not None:
            with contextlib.suppress(Exception):
                await leases.release(self.deps.sessions, lease)

    async def _drive(self, lease: Lease) -> None:
        work = asyncio.create_task(execute(self.deps, lease))
        heartbeat = asyncio.create_task(self._heartbeat(lease, work))
        try:
            await work
            log.info("sync run completed", task_id=str(lease.run_id))
        except LeaseLost as error:
            log.warning("sync run lease lost", task_id=str(lease.run_id), error=str(error))
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                work.cancel()  # we are being stopped
                raise
            log.warning("sync run stopped: lease lost", task_id=str(lease.run_id))
        except Exception as error:
            await self._fail(lease, error)
        finally:
            heartbeat.cancel()

    async def _fail(self, lease: Lease, error: Exception) -> None:
        reason = str(error) if isinstance(error, UpstreamAuthError) else _describe(error)
        log.error("sync run failed", task_id=str(lease.run_id), error=reason)
        try:
            await leases.finish(self.deps.sessions, lease, "failed", reason)
            await progress(self.deps, lease.run_id)
        except LeaseLost:
            return
        except Exception as error:  # e.g. the database is away: the lease expires instead
            log.error("sync run not marked failed", task_id=str(lease.run_id), error=repr(error))

    async def _heartbeat(self, lease: Lease, work: asyncio.Task[SyncRun]) -> None:
        """Renew the lease; stop the work once it can no longer be held."""
        loop = asyncio.get_running_loop()
        renewed_at = loop.time()
        while not work.done():
            await asyncio.sleep(lease.seconds / 3)
            try:
                if not await leases.renew(self.deps.sessions, lease):
                    break
                renewed_at = loop.time()
            except Exception as error:
                log.warning("lease renewal failed", task_id=str(lease.run_id), error=repr(error))
                if loop.time() - renewed_at > lease.seconds:
                    break
        if not work.done():
            log.warning("sync run lease lost; stopping", task_id=str(lease.run_id))
            work.cancel()


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
