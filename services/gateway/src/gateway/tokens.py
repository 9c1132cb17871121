"""Bearer tokens: verified in full once, then by signature and clock on every later request.

A client sends the same token on every call for hours, and PyJWT's decoding (base64, JSON, the
claim checks) is a visible share of a list page. Once `verify_token` has accepted a token, its
principal and validity window are kept under its signed part (`header.payload`). A request
with a known signed part still has its HMAC recomputed and compared in constant time, and the
clock checked as PyJWT checks it; anything else goes through `verify_token` again. Only tokens
that passed in full are kept, so the cache cannot be filled with forgeries.
"""

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from common.auth import Principal, verify_token

# As `common.auth`: PyJWT's leeway for exp, nbf and iat.
LEEWAY_SECONDS = 30


@dataclass(frozen=True, slots=True)
class _Known:
    principal: Principal
    not_before: float  # the token is refused before this instant
    expires: float  # ...and from this instant on


def _window(payload_segment: str) -> tuple[float, float]:
    """The span in which PyJWT accepts this (already verified) payload's exp, nbf and iat."""
    padded = payload_segment + "=" * (-len(payload_segment) % 4)
    claims = json.loads(base64.urlsafe_b64decode(padded))
    starts = [int(claims[name]) for name in ("nbf", "iat") if name in claims]
    not_before = max(starts) - LEEWAY_SECONDS if starts else float("-inf")
    return not_before, int(claims["exp"]) + LEEWAY_SECONDS


class TokenVerifier:
    def __init__(self, secret: str, *, max_hours: int, size: int = 4096) -> None:
        self._secret = secret
        self._key = secret.encode()
        self._max_hours = max_hours
        self._size = size
        self._known: dict[str, _Known] = {}

    def verify(self, token: str) -> Principal:
        """The token's principal; `common.auth.InvalidTokenError` when it is refused."""
        signed, _, signature = token.rpartition(".")
        known = self._known.get(signed) if signed else None
        if known is not None and self._signed(signed, signature):
            now = time.time()
            if known.not_before <= now < known.expires:
                return known.principal
        principal = verify_token(token, self._secret, max_hours=self._max_hours)
        self._remember(signed, principal)
        return principal

    def _signed(self, signed: str, signature: str) -> bool:
        digest = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=")
        return hmac.compare_digest(expected, signature.encode())

    def _remember(self, signed: str, principal: Principal) -> None:
        # A signature PyJWT accepted in a form `_signed` does not write (say, padded base64)
        # never matches the cache, so such a token is simply verified in full each time.
        not_before, expires = _window(signed.partition(".")[2])
        if len(self._known) >= self._size:
            del self._known[next(iter(self._known))]  # the oldest
        self._known[signed] = _Known(principal, not_before, expires)
