import time

import jwt
import pytest

from common.auth import InvalidTokenError, bearer_token, issue_token, verify_token

SECRET = "a-test-secret-long-enough-for-any-hmac-" + "x" * 40


def test_valid_token_gives_its_principal() -> None:
    token = issue_token(SECRET, "111111111", admin=True, hours=1)

    principal = verify_token(token, SECRET, max_hours=24)

    assert principal.user_id == "111111111"
    assert principal.is_admin
    assert principal.may_see_owner(42)


def test_user_sees_only_own_deals() -> None:
    principal = verify_token(issue_token(SECRET, "5"), SECRET, max_hours=24)

    assert principal.may_see_owner(5)
    assert not principal.may_see_owner(6)
    assert not principal.may_see_owner(None)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "1"},  # no exp
        {"exp": 9_999_999_999},  # no sub
        {"sub": "abc", "exp": int(time.time()) + 60},
        {"sub": "1", "exp": int(time.time()) - 3600},
        {"sub": "1", "exp": int(time.time()) + 48 * 3600},
        {"sub": "1", "role": "root", "exp": int(time.time()) + 60},
        {"sub": "1", "iat": int(time.time()) - 47 * 3600, "exp": int(time.time()) + 60},
    ],
)
def test_bad_claims_are_refused(claims: dict[str, object]) -> None:
    token = jwt.encode(claims, SECRET, algorithm="HS256")

    with pytest.raises(InvalidTokenError):
        verify_token(token, SECRET, max_hours=24)


def test_wrong_signature_and_algorithm_are_refused() -> None:
    claims = {"sub": "1", "exp": int(time.time()) + 60}

    with pytest.raises(InvalidTokenError):
        verify_token(jwt.encode(claims, "other-secret-" + "x" * 60), SECRET, max_hours=1)
    with pytest.raises(InvalidTokenError):
        verify_token(jwt.encode(claims, SECRET, algorithm="HS512"), SECRET, max_hours=1)
    with pytest.raises(InvalidTokenError):
        verify_token("not.a.jwt", SECRET, max_hours=1)


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
