"""The WebSocket server: `/ws/chats/{user_id}/` plus the probes, on one `websockets` server.

`websockets` rather than an ASGI stack because the two costs that matter here are memory per
idle connection and fan-out (see the benchmark issue): compression off, tiny inbound limits,
and frames written straight into each transport. The probes are answered in
`process_request`, before any handshake.
"""

import asyncio
import contextlib
import http
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from common.auth import InvalidTokenError, Principal, bearer_token, verify_token
from common.health import Check, first_failing
from common.metrics import render_metrics
from common.settings import Settings
from realtime.frames import PONG
from realtime.hub import Client, Hub
from realtime.journal import Journal
from realtime.metrics import AUTH_CLOSES

log = structlog.get_logger(__name__)

CHATS_PATH: Final = re.compile(r"/ws/chats/([1-9][0-9]{0,19})/?")
UNAUTHORIZED: Final = 4401
FORBIDDEN: Final = 4403
SERVICE_RESTART: Final = 1012
TRY_AGAIN_LATER: Final = 1013
READY_WAIT_SECONDS: Final = 30.0
CATCH_UP_FRAMES: Final = 64  # missed frames written before waiting for the socket to drain
LISTEN_BACKLOG: Final = 2048  # handshakes waiting to be accepted


@dataclass
class Realtime:
    settings: Settings
    hub: Hub
    journal: Journal
    server: Server | None = None
    _journal_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    # --- HTTP ----------------------------------------------------------------------------

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        path = urlsplit(request.path).path
        if CHATS_PATH.fullmatch(path):
            return None
        probe = path.rstrip("/")
        if probe == "/healthz":
            return _json(http.HTTPStatus.OK, {"status": "ok"})
        if probe == "/readyz":
            failed = await first_failing(self._checks())
            if failed is None:
                return _json(http.HTTPStatus.OK, {"status": "ok"})
            name, reason = failed
            body = {"status": "unavailable", "dependency": name, "reason": reason}
            return _json(http.HTTPStatus.SERVICE_UNAVAILABLE, body)
        if probe == "/metrics":
            payload, content_type = render_metrics()
            return _response(http.HTTPStatus.OK, payload, content_type)
        return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")

    def _checks(self) -> Mapping[str, Check]:
        async def rabbitmq() -> None:
            if not self.journal.connected:
                raise ConnectionError("not connected")

        async def journal() -> None:
            if not self.hub.ready.is_set():
                raise RuntimeError("catching up")

        return {"rabbitmq": rabbitmq, "journal": journal}

    # --- WebSocket -----------------------------------------------------------------------

    async def handler(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        parts = urlsplit(request.path)
        match = CHATS_PATH.fullmatch(parts.path)
        assert match is not None  # process_request answered every other path
        user_id = match[1]
        query = parse_qs(parts.query)
        principal = self._principal(query, request.headers)
        refusal = _refusal(principal, user_id)
        # Only the path is logged: the query string may carry the token.
        if refusal is not None:
            AUTH_CLOSES.labels(code=str(refusal[0])).inc()
            log.info("stream refused", path=parts.path, code=refusal[0])
            await connection.close(*refusal)
            return
        assert principal is not None
        since = _since(query)
        log.info("stream opened", path=parts.path, admin=principal.is_admin, since=since)
        try:
            await asyncio.wait_for(self.hub.ready.wait(), READY_WAIT_SECONDS)
        except TimeoutError:
            await connection.close(TRY_AGAIN_LATER, "journal not ready")
            return
        client, missed = self.hub.attach(
            connection, user_id, is_admin=principal.is_admin, since=since
        )
        try:
            await self._catch_up(connection, client, missed)
            del missed  # an idle connection keeps nothing of its catch-up
            async for message in connection:
                if _is_ping(message):
                    await connection.send(PONG, text=True)
        except ConnectionClosed:
            pass
        finally:
            self.hub.detach(client)

    async def _catch_up(
        self, connection: ServerConnection, client: Client, missed: list[bytes]
    ) -> None:
        """The missed frames, then those that arrived meanwhile; the client is live after."""
        for index, frame in enumerate(missed, 1):
            await _send(connection, frame, drain=index % CATCH_UP_FRAMES == 0)
        missed.clear()
        while (queued := self.hub.go_live(client)) is not None:
            await _send(connection, queued, drain=True)

    def _principal(self, query: dict[str, list[str]], headers: Headers) -> Principal | None:
        tokens = query.get("token")
        token = tokens[0] if tokens else bearer_token(headers.get("Authorization"))
        if not token:
            return None
        try:
            return verify_token(
                token,
                self.settings.auth_jwt_secret.get_secret_value(),
                max_hours=self.settings.auth_max_token_hours,
            )
        except InvalidTokenError:
            return None

    # --- life cycle ----------------------------------------------------------------------

    async def start(self, *, host: str, port: int) -> None:
        self._journal_task = asyncio.get_running_loop().create_task(self.journal.run())
        self.server = await serve(
            self.handler,
            host,
            port,
            process_request=self.process_request,
            compression=None,
            max_size=4096,  # clients only send pings
            max_queue=4,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            # Every browser reconnects at once after a deploy or a network blip: asyncio's
            # default of 100 pending connections overflowed at 200 simultaneous handshakes,
            # and the kernel reset the excess ones. The kernel caps it at net.core.somaxconn.
            backlog=LISTEN_BACKLOG,
        )
        log.info("realtime listening", host=host, port=self.port)

    async def stop(self) -> None:
        """Close every connection with 1012 (clients resume elsewhere), then the journal."""
        log.info("realtime stopping", connections=sum(map(len, self.hub.clients.values())))
        if self.server is not None:
            self.server.close(code=SERVICE_RESTART, reason="service restart")
            await self.server.wait_closed()
        if self._journal_task is not None:
            self._journal_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._journal_task
            await self.journal._close()


def make_realtime(settings: Settings, hub: Hub | None = None) -> Realtime:
    hub = hub or Hub(
        retention_events=settings.realtime_retention_events,
        retention_seconds=settings.realtime_retention_hours * 3600,
    )
    url = settings.rabbitmq_url.get_secret_value()
    journal = Journal(url, hub, retention_hours=settings.realtime_retention_hours)
    return Realtime(settings, hub, journal)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, hub: Hub | None = None, port: int | None = None
) -> AsyncIterator[Realtime]:
    realtime = make_realtime(settings, hub)
    await realtime.start(
        host=settings.bind_host, port=settings.realtime_port if port is None else port
    )
    try:
        yield realtime
    finally:
        await realtime.stop()


async def _send(connection: ServerConnection, frame: bytes, *, drain: bool) -> None:
    """Write a frame; wait for the socket only now and then, so catching up stays fast."""
    if drain or connection.protocol.state is not State.OPEN:
        await connection.send(frame, text=True)
    else:
        connection.protocol.send_text(frame)
        connection.send_data()


def _refusal(principal: Principal | None, user_id: str) -> tuple[int, str] | None:
    if principal is None:
        return UNAUTHORIZED, "unauthorized"
    if not principal.may_see_owner(user_id):
        return FORBIDDEN, "forbidden"
    return None


def _since(query: dict[str, list[str]]) -> int | None:
    values = query.get("since")
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        return -2  # not a seq: answered with resync


def _is_ping(message: str | bytes) -> bool:
    try:
        payload = json.loads(message)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("type") == "ping"


def _json(status: http.HTTPStatus, body: object) -> Response:
    return _response(status, json.dumps(body).encode(), "application/json")


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)
