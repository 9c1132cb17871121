import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common.auth import issue_token
from common.testing import Infrastructure, settings_for, settled_readiness
from realtime.server import LISTEN_BACKLOG, running
from realtime.testing import Stack, close_code, message_received, receive, text_of, token_for

SOMAXCONN = int(Path("/proc/sys/net/core/somaxconn").read_text())  # the kernel's cap


async def _close_code(url: str) -> int | None:
    """The close code, asserting that the server sent nothing before closing."""
    async with connect(url, compression=None) as client:
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?token=not-a-jwt",
        "?token=" + token_for("100000001", hours=1, now=time.time() - 3 * 3600),
    ],
    ids=["missing", "malformed", "expired"],
)
async def test_bad_token_closes_with_4401(stack: Stack, user_id: str, query: str) -> None:
    realtime = await stack.start()

    code = await _close_code(f"ws://127.0.0.1:{realtime.port}/ws/chats/{user_id}/{query}")

    assert code == 4401


async def test_token_signed_with_another_secret_closes_with_4401(
    stack: Stack, user_id: str
) -> None:
    realtime = await stack.start()
    forged = issue_token("another-secret-" + "z" * 32, user_id)

    code = await _close_code(f"ws://127.0.0.1:{realtime.port}/ws/chats/{user_id}?token={forged}")

    assert code == 4401


async def test_another_users_stream_closes_with_4403(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    url = f"ws://127.0.0.1:{realtime.port}/ws/chats/{user_id}/?token={token_for('100000002')}"

    code = await _close_code(url)

    assert code == 4403


async def test_admin_may_open_any_users_stream(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    admin = await stack.connect(realtime, user_id, token=token_for("100000003", admin=True))

    await stack.publish(message_received(user_id, "seen by the admin"))

    assert text_of(await receive(admin)) == "seen by the admin"


async def test_bearer_header_without_slash_is_accepted(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    url = f"ws://127.0.0.1:{realtime.port}/ws/chats/{user_id}"
    headers = {"Authorization": f"Bearer {token_for(user_id)}"}

    async with connect(url, compression=None, additional_headers=headers) as client:
        await stack.publish(message_received(user_id, "over a header"))
        frame = await receive(client)

    assert text_of(frame) == "over a header"


async def test_ping_is_answered_with_pong(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    client = await stack.connect(realtime, user_id)

    await client.send('{"type": "ping"}')

    assert await receive(client) == {"type": "pong"}


async def test_graceful_shutdown_closes_with_1012(stack: Stack, user_id: str) -> None:
    realtime = await stack.start()
    client = await stack.connect(realtime, user_id)

    await realtime.stop()

    assert await close_code(client) == 1012


async def test_probes_answer_with_and_without_slash(stack: Stack) -> None:
    realtime = await stack.start()

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{realtime.port}") as http:
        healthz = await http.get("/healthz")
        readyz = await settled_readiness(http)
        metrics = await http.get("/metrics")
        unknown = await http.get("/nowhere")

    assert healthz.json() == {"status": "ok"}
    assert readyz.status_code == 200, readyz.text
    assert "realtime_connections" in metrics.text
    assert unknown.status_code == 404


async def test_readyz_names_rabbitmq_when_it_does_not_answer(
    infrastructure: Infrastructure,
) -> None:
    settings = settings_for(infrastructure, rabbitmq_url="amqp://guest:guest@127.0.0.1:1/")

    async with (
        running(settings, port=0) as realtime,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{realtime.port}") as http,
    ):
        readyz = await http.get("/readyz")

    assert readyz.status_code == 503
    assert readyz.json()["dependency"] == "rabbitmq"


async def test_tokens_never_reach_the_logs(
    stack: Stack, user_id: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    realtime = await stack.start()
    token = token_for(user_id)
    forged = issue_token("another-secret-" + "z" * 32, user_id)

    client = await stack.connect(realtime, user_id, token=token)
    await client.send('{"type": "ping"}')
    await receive(client)
    await _close_code(f"ws://127.0.0.1:{realtime.port}/ws/chats/{user_id}/?token={forged}")

    logged = capsys.readouterr().out + caplog.text
    assert f"/ws/chats/{user_id}/" in logged
    assert token not in logged
    assert forged not in logged


def _listen_backlog(port: int) -> int:
    """The backlog of the socket listening on `port` (`ss` shows it as its Send-Q)."""
    listing = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(listing[2])


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss")
async def test_listens_with_room_for_a_reconnect_storm(stack: Stack) -> None:
    """Handshakes the kernel queues before they are accepted (asyncio's default is 100)."""
    realtime = await stack.start()

    assert _listen_backlog(realtime.port) == min(LISTEN_BACKLOG, SOMAXCONN) > 100
