"""Batch sync: chats/s and messages/s a sync run imports from the external-API dev server,
started through the gateway (`POST /api/v1/sync/start/`) and timed by its own status document
(`started_at` → `finished_at`).

Floor, the lower of: a bare httpx client reading the same pages the run reads (chats 20 a
page, each chat's customer, its messages 100 a page, one chat after another), and raw
`BatchWriteItem` of the same number of message items of the same shape (25 a call, one page
of calls in flight) to the same DynamoDB.
"""

import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
import httpx

from bench.harness import NotMeasured, Row, not_measured, rate, ratio
from bench.infra import EXTERNAL_TOKEN, JWT_SECRET, Config, Service, free_port
from common.auth import issue_token
from common.dynamo import dynamodb_client, to_attributes

NAME = "batch"
WHAT = "batch sync"
TARGET = "≥ 50% of the floor"
CHAT_PAGE = 20
MESSAGE_PAGE = 100


async def _reset(config: Config) -> None:
    database = await asyncpg.connect(config.stack.postgres_url)
    try:
        await database.execute(
            "DELETE FROM message_key WHERE deal_id IN "
            "(SELECT id FROM deal WHERE source = 'external')"
        )
        await database.execute("DELETE FROM deal WHERE source = 'external'")
        await database.execute("DELETE FROM customer WHERE source = 'external'")
        await database.execute("TRUNCATE sync_run, sync_retry_chat")
    finally:
        await database.close()


async def _read_floor(base: str) -> tuple[int, list[list[dict[str, Any]]], float]:
    """Every page the run reads; returns (chats, message pages, seconds)."""
    headers = {"Authorization": f"Bearer {EXTERNAL_TOKEN}"}
    pages: list[list[dict[str, Any]]] = []
    chats = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        begin = time.perf_counter()
        cursor: str | None = None
        while True:
            params = {"limit": str(CHAT_PAGE), **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/v1/chats", params=params)).raise_for_status().json()
            for chat in page["items"]:
                chats += 1
                await http.get(f"/api/v1/customers/{chat['customer_id']}")
                message_cursor: str | None = None
                while True:
                    params = {"limit": str(MESSAGE_PAGE)}
                    if message_cursor:
                        params["cursor"] = message_cursor
                    path = f"/api/v1/chats/{chat['id']}/messages"
                    messages = (await http.get(path, params=params)).raise_for_status().json()
                    pages.append([{**item, "chat_id": chat["id"]} for item in messages["items"]])
                    message_cursor = messages["next_cursor"]
                    if not message_cursor:
                        break
            cursor = page["next_cursor"]
            if not cursor:
                break
        return chats, pages, time.perf_counter() - begin


async def _write_floor(config: Config, pages: list[list[dict[str, Any]]]) -> float:
    """The same number of imported message items, written with raw BatchWriteItem."""
    table = config.stack.table
    async with dynamodb_client(config.stack.settings()) as dynamo:

        async def put(items: list[dict[str, Any]]) -> None:
            requests: list[Any] = [{"PutRequest": {"Item": to_attributes(i)}} for i in items]
            while requests:
                answer = await dynamo.batch_write_item(RequestItems={table: requests})
                requests = list(answer.get("UnprocessedItems", {}).get(table, []))

        begin = time.perf_counter()
        for page in pages:
            items = [_item(message) for message in page]
            await asyncio.gather(*(put(items[at : at + 25]) for at in range(0, len(items), 25)))
        return time.perf_counter() - begin


def _item(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "deal_id": f"bench-floor-{message['chat_id']}",
        "sk": f"m#{message['created_at']}#{message['id']}",
        "message_id": message["id"],
        "chat_id": message["chat_id"],
        "direction": message.get("direction", "incoming"),
        "sent_by": "customer",
        "sender": {"id": "cust", "name": "Customer"},
        "date": message["created_at"],
        "source": "imported",
        "text": message.get("text", ""),
        "entities": [],
        "caption_entities": [],
        "edit_ts": 0,
    }


async def run(config: Config) -> list[Row]:
    chats = config.size(600, 150)
    max_messages = config.size(60, 40)
    data: dict[str, Any] = {"chats": chats, "max_messages_per_chat": max_messages}
    await _reset(config)
    api_port = free_port()
    api = config.service(
        "external-api-dev",
        port=api_port,
        EXTERNAL_API_DEV_PORT=str(api_port),
        EXTERNAL_DEV_CHATS=str(chats),
        EXTERNAL_DEV_MAX_MESSAGES=str(max_messages),
    )
    api.ready_path = "/healthz"
    try:
        await api.start()
    except NotMeasured as error:
        return [not_measured(NAME, WHAT, TARGET, str(error))]
    base = f"http://127.0.0.1:{api_port}"
    started: list[Service] = [api]
    try:
        read_chats, pages, read_seconds = await _read_floor(base)
        messages = sum(len(page) for page in pages)
        write_seconds = await _write_floor(config, pages)
        data["floor"] = {
            "chats": read_chats,
            "messages": messages,
            "read_seconds": round(read_seconds, 2),
            "write_seconds": round(write_seconds, 2),
        }
        env = {"EXTERNAL_API_URL": base, "SYNC_SCAN_SECONDS": "2"}
        gateway_port, worker_port = free_port(), free_port()
        gateway = config.service(
            "gateway", port=gateway_port, GATEWAY_PORT=str(gateway_port), **env
        )
        worker = config.service(
            "sync-worker", port=worker_port, SYNC_WORKER_PORT=str(worker_port), **env
        )
        for service in (gateway, worker):
            try:
                await service.start()
            except NotMeasured as error:
                return [not_measured(NAME, WHAT, TARGET, str(error))]
            started.append(service)
        status = await _sync(config, gateway_port, started, env, data)
    finally:
        for service in reversed(started):
            await service.stop()

    if status["status"] != "completed":
        reason = f"sync run ended {status['status']}: {status.get('error')}"
        return [not_measured(NAME, WHAT, TARGET, reason)]
    seconds = (
        datetime.fromisoformat(status["finished_at"]) - datetime.fromisoformat(status["started_at"])
    ).total_seconds()
    data["run"] = {
        key: status.get(key)
        for key in ("processed_chats", "imported_messages", "skipped_chats", "failed_chats")
    }
    data["run"]["seconds"] = round(seconds, 2)
    chat_rate = status["processed_chats"] / seconds
    message_rate = status["imported_messages"] / seconds
    floor_seconds = max(read_seconds, write_seconds)
    floor_messages = messages / floor_seconds
    floor_chats = read_chats / floor_seconds
    share = ratio(message_rate, floor_messages)
    passed = share is not None and share >= 0.5 and status["imported_messages"] == messages
    imported = status["imported_messages"]
    figure = (
        f"{rate(chat_rate, ' chats/s')}, {rate(message_rate, ' msg/s')} ({imported:,} messages)"
    )
    floor = (
        f"{rate(floor_chats, ' chats/s')}, {rate(floor_messages, ' msg/s')} (read "
        f"{rate(messages / read_seconds, ' msg/s')}, "
        f"BatchWriteItem {rate(messages / write_seconds, ' msg/s')})"
    )
    note = data.get("note", "")
    return [Row(NAME, WHAT, figure, floor, share, TARGET, passed, note, data)]


async def _sync(
    config: Config,
    gateway_port: int,
    started: list[Service],
    env: dict[str, str],
    data: dict[str, Any],
) -> dict[str, Any]:
    token = issue_token(JWT_SECRET, "1", admin=True, hours=1)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{gateway_port}/api/v1/sync"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/start/", json={}) as response:
            body = await response.json(content_type=None)
            if response.status != 202:
                raise NotMeasured(f"sync start answered {response.status}: {str(body)[:200]}")
        task = body["task_id"]
        deadline = time.monotonic() + config.seconds(300, 150)
        pending_since = time.monotonic()
        while time.monotonic() < deadline:
            async with http.get(f"{base}/status/{task}/") as response:
                status: dict[str, Any] = await response.json(content_type=None)
            if status.get("status") in ("completed", "failed"):
                return status
            if status.get("status") == "pending" and time.monotonic() - pending_since > 10:
                # The worker's console script does not consume sync.start (yet): run the
                # batch-only worker module the service ships instead.
                pending_since = float("inf")
                helper = Service(
                    "sync-worker-batch",
                    ["uv", "run", "--frozen", "python", "-m", "sync_worker.batch"],
                    config.stack.env(**env),
                    port=None,
                    logs=config.stack.logs,
                )
                await helper.start()
                started.append(helper)
                data["note"] = "run by `python -m sync_worker.batch`: `sync-worker` left it pending"
            await asyncio.sleep(0.25)
    raise NotMeasured(f"sync run {task} did not finish in time")
