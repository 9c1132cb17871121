"""Property-based: whatever schemathesis sends per /openapi.json, no 5xx, no off-schema answer.

The app runs in-process over ASGI (schemathesis drives its lifespan on its own thread).
"""

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from common.settings import Settings
from gateway.app import create_app
from gateway.deals.schemas import EXAMPLE_CUSTOMER_ID, EXAMPLE_DEAL_ID

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="session")
def api_schema(settings: Settings, storage: None, migrated_database: str) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, relay_interval=60))


@pytest.fixture
async def example_deal(fresh: None, seed: Any) -> None:
    """The deal the OpenAPI examples name, so the success paths are exercised too."""
    customer = await seed.customer(
        id=uuid.UUID(EXAMPLE_CUSTOMER_ID), avatar_url="https://upstream.example/a.jpg"
    )
    deal = await seed.deal(id=uuid.UUID(EXAMPLE_DEAL_ID), customer=customer)
    for message_id in range(1, 4):
        await seed.message(deal, message_id)
    await seed.deal(at=datetime(2025, 1, 1, tzinfo=UTC))


KNOWN_IDS = {"deal_id": EXAMPLE_DEAL_ID, "customer_id": EXAMPLE_CUSTOMER_ID}
EXAMPLES_PER_OPERATION = int(os.environ.get("GATEWAY_SCHEMATHESIS_EXAMPLES", "30"))


@pytest.mark.usefixtures("example_deal")
def test_api_honours_its_schema(api_schema: Any, admin: dict[str, str]) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        known = {
            name: value for name, value in KNOWN_IDS.items() if f"{{{name}}}" in operation.path
        }
        strategies = [operation.as_strategy(mode) for mode in GenerationMode]
        if known:
            strategies.append(operation.as_strategy(path_parameters=known))

        @given(case=st.one_of(strategies))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=dict(admin), checks=CHECKS)

        exercise()

    assert len(operations) == 9
