"""The gateway's FastAPI application: the deals API, sync control, probes and the admin UI."""

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from prometheus_client import Histogram
from sqladmin import Admin
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common import db, dynamo, s3
from common.bus import declare_topology, make_broker
from common.health import Check, probe_routes
from common.heap import freeze_startup_objects
from common.settings import Settings, get_settings
from gateway import customers, docs, problems
from gateway.admin.auth import AdminAuth
from gateway.admin.views import add_views
from gateway.deals import listing
from gateway.deals.routes import router as deals_router
from gateway.deps import Resources
from gateway.sync import outbox
from gateway.sync.routes import router as sync_router
from gateway.tokens import TokenVerifier

REQUEST_SECONDS = Histogram(
    "chat_sync_gateway_request_seconds",
    "Gateway HTTP request latency by route template.",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

DESCRIPTION = """\
Telegram Business chats as deals. Every `/api/v1` call needs `Authorization: Bearer <JWT>`
(HS256; `sub` = your Telegram user id; `role: "admin"` sees everything and controls sync).
Errors are `application/problem+json` (RFC 9457). Lists are keyset-paginated with an opaque
`cursor`; follow the absolute `next` / `previous` URLs.

Replies are sent **at most once**: Telegram has no idempotency key, so a request a worker was
sending when it crashed ends `unknown` and is never sent again.
"""


class RequestContext:
    """A request id in every log line and response, latency per route template.

    A pure ASGI middleware (no BaseHTTPMiddleware). The caller's `X-Request-ID` is kept when
    it is short and printable, so one id follows a request through a proxy.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

        async def remember(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                await self.app(scope, receive, remember)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )


def _checks(request: Request) -> dict[str, Check]:
    resources: Resources = request.state.resources

    async def rabbitmq() -> None:
        if not await resources.broker.ping(timeout=1.5):
            raise ConnectionError("rabbitmq")

    return {
        "postgresql": lambda: db.ping(resources.engine),
        "rabbitmq": rabbitmq,
        "dynamodb": lambda: dynamo.ping(
            resources.dynamo, resources.settings.dynamodb_messages_table
        ),
        "s3": lambda: s3.ping(resources.s3, resources.settings.s3_bucket),
    }


def create_app(settings: Settings | None = None, *, relay_interval: float = 5.0) -> FastAPI:
    settings = settings or get_settings()
    # sqladmin wants its sessionmaker at mount time; the lifespan binds it to the engine.
    admin_sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            engine = db.make_engine(settings)
            stack.push_async_callback(engine.dispose)
            reads = await listing.open_pool(settings)
            stack.push_async_callback(reads.close)
            admin_sessions.configure(bind=engine)
            dynamo_client = await stack.enter_async_context(dynamo.dynamodb_client(settings))
            s3_client = await stack.enter_async_context(s3.s3_client(settings))
            broker = make_broker(
                settings.rabbitmq_url.get_secret_value(),
                publish_timeout=settings.publish_confirm_timeout,
            )
            stack.push_async_callback(broker.stop)
            await broker.connect()
            await declare_topology(broker, [])
            resources = Resources(
                settings=settings,
                engine=engine,
                sessions=db.make_sessionmaker(engine),
                dynamo=dynamo_client,
                s3=s3_client,
                broker=broker,
                tokens=TokenVerifier(
                    settings.auth_jwt_secret.get_secret_value(),
                    max_hours=settings.auth_max_token_hours,
                ),
                reads=reads,
            )
            relay = asyncio.create_task(
                outbox.relay(
                    resources.sessions,
                    broker,
                    interval=relay_interval,
                    timeout=settings.publish_confirm_timeout,
                ),
                name="outbox-relay",
            )
            stack.push_async_callback(_cancel, relay)
            freeze_startup_objects()
            yield {"resources": resources}

    app = FastAPI(
        title="Chat Sync",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        generate_unique_id_function=docs.operation_id,
        routes=probe_routes(_checks),
    )
    problems.install(app)
    docs.install(app)
    app.include_router(deals_router)
    app.include_router(sync_router)
    app.include_router(customers.router)
    app.add_middleware(RequestContext)
    admin = Admin(
        app,
        session_maker=admin_sessions,
        base_url="/admin",
        title="Chat Sync admin",
        authentication_backend=AdminAuth(settings),
    )
    add_views(admin)
    return app


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
