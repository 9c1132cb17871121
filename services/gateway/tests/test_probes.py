import socket
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from common.testing import settings_for, settled_readiness
from gateway.app import create_app


async def test_healthz_readyz_and_metrics_answer(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await settled_readiness(client)
    metrics = await client.get("/metrics")

    assert health.status_code == 200
    assert ready.status_code == 200, ready.text
    assert "chat_sync_gateway_request_seconds" in metrics.text


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    docs = await client.get("/docs")

    assert docs.status_code == 200
    assert "/api/v1/deals/" in schema["paths"]
    problem = schema["paths"]["/api/v1/deals/"]["get"]["responses"]["422"]["content"]
    assert list(problem) == ["application/problem+json"]


async def test_readyz_is_503_naming_the_dependency_that_does_not_answer(
    infrastructure: Any, storage: None
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings_for(infrastructure, aws_endpoint_url_s3=closed))

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get("/readyz")

    assert answer.status_code == 503
    assert answer.json()["dependency"] == "s3"


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    made = await client.get("/api/v1/deals/")

    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
