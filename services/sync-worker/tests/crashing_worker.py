"""The worker, killed with SIGKILL right after the DynamoDB writes of a batch holding
message `CRASH_MESSAGE_ID` and before its PostgreSQL commit. Started by test_crash.py."""

import os
import signal
from collections.abc import Sequence

from sync_worker import live
from sync_worker.__main__ import main
from sync_worker.store import LiveEvent


async def _kill_after_dynamodb(events: Sequence[LiveEvent]) -> None:
    target = os.environ["CRASH_MESSAGE_ID"]
    if any(getattr(event, "message_id", None) == target for event in events):
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    live.after_dynamo_write = _kill_after_dynamodb
    main(["run"])
