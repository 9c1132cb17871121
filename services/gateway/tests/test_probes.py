import httpx


async def test_healthz_readyz_and_metrics_answer(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz/")
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
