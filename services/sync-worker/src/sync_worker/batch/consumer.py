"""The `sync.start` subscriber: claim the run and acknowledge at once.

The run executes in the runner's background task (a run can outlast RabbitMQ's delivery
acknowledgement timeout). If this worker dies, the lease expires and any worker's scan
continues the run, so an acknowledged command never strands its run.
"""

from typing import Annotated, Final

import structlog
from faststream import AckPolicy
from faststream.rabbit import RabbitRouter

from common.bus import COMMANDS, consumer_queue
from common.events import SyncStart
from sync_worker.batch.runner import Runner
from sync_worker.context import LoopContext

log = structlog.get_logger(__name__)

SERVICE: Final = "sync-worker"
RUNNER_CONTEXT: Final = "sync_runner"

router = RabbitRouter()
_sync_start = consumer_queue(SERVICE, "sync.start")
QUEUES: Final = [_sync_start.name]

SyncRunner = Annotated[Runner, LoopContext(RUNNER_CONTEXT)]


@router.subscriber(_sync_start, COMMANDS, ack_policy=AckPolicy.NACK_ON_ERROR)
async def on_sync_start(command: SyncStart, runner: SyncRunner) -> None:
    claimed = await runner.start(command.task_id, max_date=command.max_date)
    log.info("sync.start received", task_id=str(command.task_id), claimed=claimed)
