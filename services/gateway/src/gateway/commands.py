"""Publishing a command to the sync-worker; an unreachable broker is a 503, not a crash."""

import structlog
from faststream.rabbit import RabbitBroker

from common.bus import publish_command
from common.events import Command
from gateway.problems import ProblemError

log = structlog.get_logger(__name__)


async def send(broker: RabbitBroker, command: Command, *, timeout: float) -> None:
    try:
        await publish_command(broker, command, timeout=timeout)
    except Exception as error:
        log.warning(
            "command not published", type=getattr(command, "type", "?"), error=type(error).__name__
        )
        raise ProblemError(503, "the command bus is unavailable; try again") from error
