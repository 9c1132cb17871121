import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_fakes import (
    CONNECTION_ID,
    SAMPLE_NAMES,
    Events,
    FakeBotAPI,
    connection_result,
    load_sample,
)


def json_values_of(texts: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4)
        ),
        max_leaves=20,
    )


# Lone surrogates included: JSON's "\\ud800" escape is valid syntax but not valid UTF-8.
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
json_values = json_values_of(st.text(st.characters() | surrogates, max_size=10))
# What a newer Bot API could plausibly send: any shape, but well-formed text.
plain_values = json_values_of(st.text())
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


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)  # type: ignore[index]
    return copy


@st.composite
def mutated_samples(draw: st.DrawFn) -> dict[str, Any]:
    update = load_sample(draw(st.sampled_from(SAMPLE_NAMES)))
    paths = [path for path in _paths(update) if path != ("update_id",)]
    path = draw(st.sampled_from(paths))
    mutated: dict[str, Any] = _replace(update, path, draw(plain_values))
    return mutated


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(update=mutated_samples())
async def test_mutated_samples_never_5xx_but_503_and_give_at_most_one_event(
    update: dict[str, Any], client: httpx.AsyncClient, events: Events, bot_api: FakeBotAPI
) -> None:
    bot_api.connections[CONNECTION_ID] = connection_result()
    lookups = len(bot_api.called("getBusinessConnection"))

    response = await client.post(
        "/telegram/webhook/",
        content=json.dumps(update).encode(),  # Python's JSON: Infinity included
        headers={"Content-Type": "application/json"},
    )

    published = await events.drain()
    if response.status_code == 503:  # only for a connection id the fake Bot API does not know
        assert len(bot_api.called("getBusinessConnection")) == lookups + 1
        assert published == []
    else:
        assert response.status_code == 200
        assert len(published) <= 1
        assert all(event["update_id"] == update["update_id"] for event in published)
