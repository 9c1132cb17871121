"""`realtime`: serve the WebSocket streams until SIGTERM, then close them with 1012."""

import asyncio
import logging
import signal

import uvloop

from common.heap import freeze_startup_objects
from common.logging import configure_logging
from common.settings import Settings, get_settings
from realtime.server import running


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(settings):
            freeze_startup_objects()
            await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def main() -> None:
    settings = get_settings()
    settings.require_secrets("auth_jwt_secret")
    configure_logging("realtime", settings.log_level)
    # One line per connection from the library is noise at 10,000 connections.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # uvloop, as uvicorn picks for the other services: fan-out is mostly socket writes.
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
