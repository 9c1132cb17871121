"""Helpers for realtime's tests: instances on free ports, events, tokens and clients.

Imported by tests only (like `common.testing`); nothing here runs in production.
"""

import asyncio
import contextlib
import itertools
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faststream.rabbit import RabbitBroker
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from common import bus
from common.auth import issue_token
from common.events import Event, MessageReceived, TelegramChat, TelegramMessage, TelegramUser
from common.settings import Settings
from common.testing import TEST_JWT_SECRET
from realtime.hub import Hub
from realtime.server import Realtime, running

_message_ids = itertools.count(1000)


def new_user_id() -> str:
    return str(10**8 + secrets.randbelow(9 * 10**8))


def token_for(user_id: str, *, admin: bool = False, **kwargs: Any) -> str:
    return issue_token(TEST_JWT_SECRET, user_id, admin=admin, **kwargs)


def message_received(
    owner_user_id: str, text: str, *, chat_id: str = "222222222", message_id: int | None = None
) -> MessageReceived:
    number = str(message_id if message_id is not None else next(_message_ids))
    customer = TelegramUser(id=chat_id, first_name="Boris")
    return MessageReceived(
        owner_user_id=owner_user_id,
        update_id=int(number),
        business_connection_id="AbC",
        chat_id=chat_id,
        message_id=number,
        message=TelegramMessage(
            message_id=number,
            chat=TelegramChat(id=chat_id, first_name="Boris"),
            sender=customer,
            date=datetime(2026, 1, 1, 1, 0, tzinfo=UTC),
            text=text,
        ),
    )


class Stack:
    """Starts realtime instances, publishes events and opens clients; cleans up after."""

    def __init__(self, settings: Settings, broker: RabbitBroker) -> None:
        self.settings = settings
        self.broker = broker
        self.exits = contextlib.AsyncExitStack()

    async def start(self, hub: Hub | None = None) -> Realtime:
        realtime = await self.exits.enter_async_context(running(self.settings, hub=hub, port=0))
        await asyncio.wait_for(realtime.hub.ready.wait(), 20)
        return realtime

    async def publish(self, *events: Event) -> None:
        for event in events:
            await bus.publish_event(self.broker, event)

    async def connect(
        self,
        realtime: Realtime,
        user_id: str,
        *,
        token: str | None = None,
        since: int | None = None,
        **kwargs: Any,
    ) -> ClientConnection:
        query = [f"token={token or token_for(user_id)}"]
        if since is not None:
            query.append(f"since={since}")
        url = f"ws://127.0.0.1:{realtime.port}/ws/chats/{user_id}/?{'&'.join(query)}"
        return await self.exits.enter_async_context(connect(url, compression=None, **kwargs))


async def receive(client: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(client.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def receive_until(
    client: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> list[dict[str, Any]]:
    """Every frame up to and including the first one `done` accepts."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not frames or not done(frames[-1]):
            frames.append(await receive(client, timeout))
    return frames


def text_of(frame: dict[str, Any]) -> str | None:
    message = frame.get("message")
    return message.get("text") if isinstance(message, dict) else None


async def close_code(client: ClientConnection, timeout: float = 10) -> int | None:
    """Read until the server closes; the code it closed with."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await client.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
