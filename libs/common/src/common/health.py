"""`/healthz`, `/readyz` and `/metrics` for every service, with and without the slash.

`/readyz` runs each named dependency check with a short timeout and answers 503 naming the
first one that fails.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from common.metrics import render_metrics

Check = Callable[[], Awaitable[object]]
_CHECK_TIMEOUT_SECONDS = 2.0


def probe_routes(checks: Callable[[Request], Mapping[str, Check]]) -> list[BaseRoute]:
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        failed = await first_failing(checks(request))
        if failed is not None:
            name, reason = failed
            return JSONResponse(
                {"status": "unavailable", "dependency": name, "reason": reason}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    async def metrics(_request: Request) -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    routes: list[BaseRoute] = []
    for path, endpoint in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)):
        routes.append(Route(path, endpoint, methods=["GET"], include_in_schema=False))
        routes.append(Route(path + "/", endpoint, methods=["GET"], include_in_schema=False))
    return routes


async def first_failing(checks: Mapping[str, Check]) -> tuple[str, str] | None:
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), _CHECK_TIMEOUT_SECONDS)
        except Exception as error:
            return name, type(error).__name__
    return None
