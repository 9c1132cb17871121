import time

import pytest

from sync_worker.batch.client import (
    ExternalApi,
    RetryPolicy,
    UpstreamAuthError,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from sync_worker.batch.testing import FAST_RETRY, TOKEN, api_for, upstream
from sync_worker.devserver.app import Faults
from sync_worker.devserver.data import generate


async def test_server_errors_are_retried_until_they_pass() -> None:
    with upstream(generate(chats=3), Faults(failure_rate=0.5, seed=3)) as up:
        api = api_for(up)

        pages = [await api.list_chats(None, 3) for _ in range(10)]
        await api.aclose()

    assert all(len(page.items) == 3 for page in pages)
    assert api.calls > 10


async def test_rate_limit_waits_for_retry_after() -> None:
    with upstream(generate(chats=2), Faults(rate_limit_rate=1.0, retry_after_seconds=1)) as up:
        calls: list[float] = []

        def limited_once(_path: str, _query: str) -> bool:
            calls.append(time.monotonic())
            if len(calls) > 1:
                up.faults.rate_limit_rate = 0.0
            return False

        up.chaos.fail = limited_once
        api = api_for(up)

        page = await api.list_chats(None, 2)
        await api.aclose()

    assert len(page.items) == 2
    assert len(calls) == 2
    # The advertised second, not the client's own short backoff.
    assert calls[1] - calls[0] >= 0.95


async def test_slow_calls_time_out_and_are_retried() -> None:
    with upstream(generate(chats=2)) as up:
        up.chaos.slow_every, up.chaos.slow_seconds = 2, 1.0
        api = api_for(up, timeout=0.3)

        first = await api.list_chats(None, 2)
        second = await api.list_chats(None, 2)
        await api.aclose()

    assert [len(first.items), len(second.items)] == [2, 2]
    assert api.calls == 3


async def test_wrong_token_fails_at_once_naming_the_variable() -> None:
    with upstream(generate(chats=2)) as up:
        api = api_for(up, token="wrong")

        with pytest.raises(UpstreamAuthError, match=r"401.*EXTERNAL_API_TOKEN"):
            await api.list_chats(None, 2)
        await api.aclose()

    assert api.calls == 1


async def test_unknown_customer_is_not_found_without_retries() -> None:
    with upstream(generate(chats=1)) as up:
        api = api_for(up)

        with pytest.raises(UpstreamNotFound):
            await api.get_customer("nobody")
        await api.aclose()

    assert api.calls == 1


async def test_upstream_down_beyond_retries_is_unavailable() -> None:
    with upstream(generate(chats=1)) as up:
        up.chaos.fail = lambda _path, _query: True
        api = api_for(up, retry=RetryPolicy(attempts=3, backoff_base=0.01))

        with pytest.raises(UpstreamUnavailable, match="failed 3 times"):
            await api.list_chats(None, 2)
        await api.aclose()

    assert api.calls == 3


async def test_unreachable_upstream_is_unavailable() -> None:
    api = ExternalApi("http://127.0.0.1:9", TOKEN, timeout=0.5, retry=FAST_RETRY)

    with pytest.raises(UpstreamUnavailable, match="Cannot connect"):
        await api.list_chats(None, 1)
    await api.aclose()

    assert api.calls == FAST_RETRY.attempts
