"""WebSocket clients for the benchmarks.

`open_idle`: thousands of idle connections from one process, each a few hundred bytes here:
a raw handshake, then only pings answered with pongs, so the server's memory is what we read.

`Listeners`: real `websockets` clients that read every frame and hand it, with its arrival
time, to a callback (fan-out counts, end-to-end latency).
"""

import asyncio
import base64
import contextlib
import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.harness import LOOPBACK

_PING, _PONG, _CLOSE = 0x9, 0xA, 0x8


class _Idle(asyncio.Protocol):
    def __init__(self, request: bytes, upgraded: asyncio.Future[bool]) -> None:
        self.request = request
        self.upgraded = upgraded
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done():
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            self.upgraded.set_result(head.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"101"])
            self.buffer = rest
        self._frames()

    def _frames(self) -> None:
        while len(self.buffer) >= 2:
            opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
            if len(self.buffer) < offset + length:
                return
            payload = self.buffer[offset : offset + length]
            self.buffer = self.buffer[offset + length :]
            if opcode == _PING and self.transport is not None:
                self.transport.write(_masked(_PONG, payload))
            elif opcode == _CLOSE:
                self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_result(False)


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def _request(port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class IdleConnections:
    def __init__(self) -> None:
        self.protocols: list[_Idle] = []

    @property
    def open(self) -> int:
        return sum(1 for protocol in self.protocols if not protocol.closed)

    async def open_many(self, port: int, paths: Sequence[str], *, concurrency: int = 100) -> int:
        """Open one connection per path; returns how many were upgraded (101)."""
        loop = asyncio.get_running_loop()
        window = asyncio.Semaphore(concurrency)
        upgraded = 0

        async def one(path: str) -> None:
            nonlocal upgraded
            async with window:
                done: asyncio.Future[bool] = loop.create_future()
                with contextlib.suppress(OSError):
                    _, protocol = await loop.create_connection(
                        lambda: _Idle(_request(port, path), done), LOOPBACK, port
                    )
                    self.protocols.append(protocol)
                    if await asyncio.wait_for(done, 30):
                        upgraded += 1

        await asyncio.gather(*(one(path) for path in paths))
        return upgraded

    def close(self) -> None:
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.transport.abort()
        self.protocols.clear()


OnFrame = Callable[[int, bytes | str, float], None]


class Listeners:
    """`websockets` clients reading every frame; `on_frame(client index, frame, arrival)`."""

    def __init__(self, on_frame: OnFrame) -> None:
        self.on_frame = on_frame
        self.connections: list[ClientConnection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.closed_codes: list[int | None] = []

    async def open(self, uris: Sequence[str], *, concurrency: int = 50) -> None:
        window = asyncio.Semaphore(concurrency)

        async def one(index: int, uri: str) -> None:
            async with window:
                connection = await connect(
                    uri, compression=None, open_timeout=30, max_size=None, ping_interval=None
                )
            self.connections.append(connection)
            self.tasks.append(asyncio.create_task(self._read(index, connection)))

        await asyncio.gather(*(one(index, uri) for index, uri in enumerate(uris)))

    async def _read(self, index: int, connection: ClientConnection) -> None:
        try:
            async for frame in connection:
                self.on_frame(index, frame, time.perf_counter())
        except ConnectionClosed:
            pass
        self.closed_codes.append(connection.close_code)

    async def close(self) -> None:
        async def close(connection: ClientConnection) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)

        await asyncio.gather(*(close(connection) for connection in self.connections))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.connections.clear()
        self.tasks.clear()
