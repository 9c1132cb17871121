import asyncio
import os
import signal
import socket
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from common.settings import InsecureSettingsError, get_settings
from common.testing import Infrastructure, settings_for
from realtime.__main__ import main, serve
from realtime.testing import close_code, token_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for_port(port: int) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_sigterm_closes_streams_with_1012_and_returns(
    infrastructure: Infrastructure, user_id: str
) -> None:
    settings = settings_for(infrastructure, realtime_port=_free_port())
    serving = asyncio.create_task(serve(settings))
    await _wait_for_port(settings.realtime_port)
    url = f"ws://127.0.0.1:{settings.realtime_port}/ws/chats/{user_id}/?token={token_for(user_id)}"

    async with connect(url) as client:
        await client.send('{"type": "ping"}')
        await asyncio.wait_for(client.recv(), 20)
        os.kill(os.getpid(), signal.SIGTERM)
        code = await close_code(client)

    assert code == 1012
    await asyncio.wait_for(serving, 10)


@pytest.mark.usefixtures("fresh_settings")
def test_production_start_refuses_a_missing_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "false")
    monkeypatch.setenv("AUTH_JWT_SECRET", "")

    with pytest.raises(InsecureSettingsError, match="AUTH_JWT_SECRET"):
        main()
