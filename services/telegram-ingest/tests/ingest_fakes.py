"""Test helpers for telegram-ingest: the fake Bot API, an event reader, a cuttable TCP proxy.

Imported by the tests (conftest puts this folder on sys.path; the name is unique in the repo).
"""

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aiohttp import web

from common.settings import Settings

SAMPLES = Path(__file__).parent / "samples"  # a copy of ../shared/telegram-samples
SECRET = "test-webhook-secret"
CONNECTION_ID = "AbCdEfGh0123456789_-business-conn-1"
OWNER_ID = "111111111"
SAMPLE_NAMES = sorted(path.stem for path in SAMPLES.glob("*.json"))

# The `start_app` fixture: run the app (lifespan included) with other settings.
StartApp = Callable[[Settings], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


def load_sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return data


def connection_result(connection_id: str = CONNECTION_ID, owner: int = 111111111) -> dict[str, Any]:
    return {
        "id": connection_id,
        "user": {"id": owner, "is_bot": False, "first_name": "Anna"},
        "user_chat_id": owner,
        "date": 1767225600,
        "is_enabled": True,
    }


@dataclass
class FakeBotAPI:
    """A real HTTP server on 127.0.0.1 answering the few Bot API methods we call."""

    url: str = ""
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # methods answering 500
    _runner: web.AppRunner | None = None

    def called(self, method: str) -> list[dict[str, str]]:
        return [params for name, params in self.calls if name == method]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = {key: str(value) for key, value in (await request.post()).items()}
        self.calls.append((method, params))
        if method in self.broken:
            return _error(500, "Internal Server Error")
        if method == "getBusinessConnection":
            found = self.connections.get(params["business_connection_id"])
            if found is None:
                return _error(400, "Bad Request: business connection not found")
            return _ok(found)
        if method == "getUpdates":
            offset = int(params.get("offset", 0))
            batch = [update for update in self.updates if update["update_id"] >= offset]
            if not batch:
                await asyncio.sleep(0.02)  # a very short long poll
            return _ok(batch[: int(params.get("limit", 100))])
        if method == "getWebhookInfo":
            return _ok(
                {
                    "url": "https://example.test/telegram/webhook/",
                    "has_custom_certificate": False,
                    "pending_update_count": 3,
                    "last_error_date": 1767225600,
                    "last_error_message": "Connection refused",
                    "allowed_updates": ["business_message"],
                }
            )
        return _ok(True)


def _ok(result: object) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description}, status=status
    )


class Events:
    """A private queue bound to every `telegram.*` event on the real EVENTS exchange."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            message = await self.queue.get(fail=False)
            if message is not None:
                await message.ack()
                assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
                body: dict[str, Any] = json.loads(message.body)
                assert body["type"] == message.routing_key
                return body
            await asyncio.sleep(0.01)
        raise AssertionError("no event published")

    async def drain(self) -> list[dict[str, Any]]:
        """Everything published so far (the app answers only after the confirm)."""
        found = []
        while (message := await self.queue.get(fail=False)) is not None:
            await message.ack()
            found.append(json.loads(message.body))
        return found


class TcpProxy:
    """A TCP forwarder the test can cut (close every connection, refuse new ones) and restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(_pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.transport.abort()
