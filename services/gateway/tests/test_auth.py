"""Every way a token can be wrong is a 401 problem; admin-only routes are 403 for others."""

import time
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest

from common.auth import issue_token
from common.testing import TEST_JWT_SECRET

NOW = time.time()


def _signed(claims: dict[str, object], secret: str = TEST_JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


BAD_HEADERS = {
    "missing": None,
    "empty bearer": "Bearer ",
    "basic scheme": "Basic dXNlcjpwYXNz",
    "malformed token": "Bearer not.a.jwt",
    "bad signature": "Bearer " + issue_token("another-secret-" + "z" * 32, "111111111"),
    "expired": "Bearer " + issue_token(TEST_JWT_SECRET, "111111111", hours=1, now=NOW - 7200),
    "over-long lifetime": "Bearer " + issue_token(TEST_JWT_SECRET, "111111111", hours=25),
    "no exp": "Bearer " + _signed({"sub": "111111111"}),
    "sub not decimal": "Bearer " + _signed({"sub": "boris", "exp": int(NOW) + 60}),
    "unknown role": "Bearer " + _signed({"sub": "1", "role": "root", "exp": int(NOW) + 60}),
    "alg none": "Bearer "
    + jwt.encode({"sub": "111111111", "exp": int(NOW) + 60}, None, algorithm="none"),
}


@pytest.mark.parametrize("header", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/deals/"),
        ("GET", f"/api/v1/deals/{uuid.uuid4()}/messages/"),
        ("POST", "/api/v1/sync/start/"),
        ("GET", f"/api/v1/customers/{uuid.uuid4()}/avatar/"),
    ],
)
async def test_bad_or_missing_token_is_a_401_problem(
    client: httpx.AsyncClient, header: str | None, method: str, path: str
) -> None:
    headers = {"Authorization": header} if header is not None else {}

    answer = await client.request(method, path, headers=headers)

    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["type"] == "https://chat-sync.example/problems/unauthorized"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/sync/start/"), ("GET", f"/api/v1/sync/status/{uuid.uuid4()}/")],
)
async def test_sync_control_is_403_for_a_non_admin(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], method: str, path: str
) -> None:
    answer = await client.request(method, path, headers=auth())

    assert answer.status_code == 403
    assert answer.json()["type"] == "https://chat-sync.example/problems/forbidden"


async def test_a_sub_beyond_bigint_sees_nothing_and_does_not_crash(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]
) -> None:
    answer = await client.get("/api/v1/deals/", headers=auth("99999999999999999999"))

    assert answer.status_code == 200
    assert answer.json()["results"] == []
