"""JWTs of Chat Sync: HS256, `sub` = a business owner's Telegram user id, optional admin role.

Used by the gateway (HTTP) and realtime (WebSocket) alike, so both refuse the same tokens.
"""

import re
import time
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
_DECIMAL_ID = re.compile(r"^[1-9][0-9]{0,19}$")
_CLOCK_SKEW_SECONDS = 30


class InvalidTokenError(Exception):
    """Missing, malformed, badly signed, expired or over-long."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    is_admin: bool

    def may_see_owner(self, owner_user_id: str | int | None) -> bool:
        return self.is_admin or (owner_user_id is not None and str(owner_user_id) == self.user_id)


def issue_token(
    secret: str, user_id: str, *, admin: bool = False, hours: float = 24, now: float | None = None
) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": str(user_id), "iat": issued, "exp": issued + int(hours * 3600)}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str, *, max_hours: int) -> Principal:
    if not token or not secret:
        raise InvalidTokenError("missing token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
            leeway=_CLOCK_SKEW_SECONDS,
        )
    except jwt.PyJWTError as error:
        raise InvalidTokenError(type(error).__name__) from error
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _DECIMAL_ID.fullmatch(subject):
        raise InvalidTokenError("sub must be a decimal Telegram user id")
    role = claims.get("role")
    if role is not None and role != "admin":
        raise InvalidTokenError("unknown role")
    expires = claims["exp"]
    limit = max_hours * 3600 + _CLOCK_SKEW_SECONDS
    issued = claims.get("iat")
    if not isinstance(expires, int | float) or expires - time.time() > limit:
        raise InvalidTokenError("token lifetime too long")
    if issued is not None and (not isinstance(issued, int | float) or expires - issued > limit):
        raise InvalidTokenError("token lifetime too long")
    return Principal(user_id=subject, is_admin=role == "admin")


def bearer_token(header_value: str | None) -> str | None:
    if not header_value:
        return None
    scheme, _, value = header_value.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
