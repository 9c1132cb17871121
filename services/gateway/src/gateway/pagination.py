"""Opaque keyset cursors and the list envelope `{next, previous, results}` with absolute URLs."""

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

from fastapi import Request
from pydantic import BaseModel, Field

from gateway.problems import ProblemError

MAX_CURSOR_LENGTH = 1024
T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    next: str | None = Field(description="Absolute URL of the next page, or null.")
    previous: str | None = Field(description="Absolute URL of the previous page, or null.")
    results: list[T]


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The cursor's payload; anything we did not write is a 422 on `cursor`."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_cursor() from None
    return payload


def invalid_cursor() -> ProblemError:
    return ProblemError(
        422,
        "invalid: cursor",
        errors=[{"field": "cursor", "location": "query", "message": "not a cursor of this list"}],
    )


def page_url(request: Request, cursor: str | None) -> str | None:
    """This request's URL (path and filters kept) at another cursor."""
    if cursor is None:
        return None
    return str(request.url.include_query_params(cursor=cursor))
