import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_fakes import Events

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
update_types = st.sampled_from(
    [
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message",
        "something_new",
    ]
)
authentic_looking = st.builds(
    lambda update_id, kind, value, extra: {"update_id": update_id, kind: value, **extra},
    st.integers(min_value=0, max_value=2**31),
    update_types,
    json_values,
    st.dictionaries(st.text(max_size=5), json_values, max_size=2),
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.text(), json_values).map(lambda value: json.dumps(value).encode()),
    authentic_looking.map(lambda value: json.dumps(value).encode()),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
async def test_malformed_bodies_never_5xx_and_never_a_normal_event(
    body: bytes, client: httpx.AsyncClient, events: Events
) -> None:
    response = await client.post(
        "/telegram/webhook/", content=body, headers={"Content-Type": "application/json"}
    )

    published: list[dict[str, Any]] = await events.drain()
    assert response.status_code in (200, 400)
    assert {event["type"] for event in published} <= {"telegram.update.unparsed"}
    assert len(published) <= (1 if response.status_code == 200 else 0)
