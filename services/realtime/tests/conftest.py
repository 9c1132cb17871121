"""Fixtures of realtime's tests: a confirmed publisher and a stack that cleans up."""

from collections.abc import AsyncIterator

import pytest
from faststream.rabbit import RabbitBroker

from common import bus
from common.settings import Settings
from realtime.testing import Stack, new_user_id


@pytest.fixture(scope="session")
async def broker(settings: Settings) -> AsyncIterator[RabbitBroker]:
    broker = bus.make_broker(settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    await broker.connect()
    await bus.declare_topology(broker, [])
    yield broker
    await broker.stop()


@pytest.fixture
async def stack(settings: Settings, broker: RabbitBroker) -> AsyncIterator[Stack]:
    stack = Stack(settings, broker)
    async with stack.exits:
        yield stack


@pytest.fixture
def user_id() -> str:
    return new_user_id()
