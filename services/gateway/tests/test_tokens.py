"""A token accepted once is accepted again only with its own signature and within its time."""

import time

import jwt
import pytest

from common.auth import InvalidTokenError, Principal, issue_token
from common.testing import TEST_JWT_SECRET
from gateway.tokens import TokenVerifier


def _verifier() -> TokenVerifier:
    return TokenVerifier(TEST_JWT_SECRET, max_hours=24)


def test_a_verified_token_is_accepted_again() -> None:
    verifier = _verifier()
    token = issue_token(TEST_JWT_SECRET, "111111111", admin=True, hours=1)

    first, again = verifier.verify(token), verifier.verify(token)

    assert first == again == Principal(user_id="111111111", is_admin=True)


def test_a_known_token_with_another_signature_is_refused() -> None:
    verifier = _verifier()
    token = issue_token(TEST_JWT_SECRET, "111111111", hours=1)
    verifier.verify(token)
    signed, _, signature = token.rpartition(".")
    forged = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}), "x" * 40, algorithm="HS256"
    )
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]

    for token in (forged, f"{signed}.{flipped}", f"{signed}.", signed):
        with pytest.raises(InvalidTokenError):
            verifier.verify(token)


def test_a_known_token_is_refused_once_it_expires() -> None:
    verifier = _verifier()
    # Expired a moment ago, still inside the 30 s leeway: accepted now, not two seconds later.
    now = time.time()
    token = jwt.encode(
        {"sub": "111111111", "exp": int(now) - 29}, TEST_JWT_SECRET, algorithm="HS256"
    )
    verifier.verify(token)

    time.sleep(2)

    with pytest.raises(InvalidTokenError):
        verifier.verify(token)


def test_a_token_not_yet_valid_is_refused_even_after_a_valid_one() -> None:
    verifier = _verifier()
    now = int(time.time())
    early = jwt.encode(
        {"sub": "111111111", "exp": now + 600, "nbf": now + 300}, TEST_JWT_SECRET, "HS256"
    )

    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            verifier.verify(early)


def test_the_cache_is_bounded_and_evicted_tokens_still_verify() -> None:
    verifier = TokenVerifier(TEST_JWT_SECRET, max_hours=24, size=2)
    tokens = [issue_token(TEST_JWT_SECRET, str(100 + n), hours=1) for n in range(5)]

    users = [verifier.verify(token).user_id for token in tokens + tokens]

    assert users == [str(100 + n) for n in range(5)] * 2
