"""Fixtures for the live path: a DynamoDB client and fresh stores per test."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.dynamo import dynamodb_client
from common.settings import Settings
from sync_worker.live import Stores
from sync_worker.testing import new_stores

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

SAMPLES = Path(__file__).parent / "samples"


def sample_update(name: str) -> dict[str, Any]:
    update: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return update


@pytest.fixture
def samples() -> dict[str, dict[str, Any]]:
    """The Telegram sample updates by file name (copied from the shared samples)."""
    return {path.stem: sample_update(path.stem) for path in sorted(SAMPLES.glob("*.json"))}


@pytest.fixture(scope="session")
async def dynamo(settings: Settings) -> AsyncIterator["DynamoDBClient"]:
    async with dynamodb_client(settings) as client:
        yield client


@pytest.fixture
async def stores(
    sessions: async_sessionmaker[AsyncSession], dynamo: "DynamoDBClient", clean_database: None
) -> Stores:
    return await new_stores(sessions, dynamo)
