"""Input types shared by the routes: text PostgreSQL and RabbitMQ can carry, and dates."""

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from gateway.problems import not_found

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("must be valid Unicode text") from error
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _date_means_midnight(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a date (2025-01-01) or an RFC 3339 date-time")
    if _DATE_ONLY.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError as error:
            raise ValueError("not a valid date") from error
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("date out of range") from error


StorableText = Annotated[str, AfterValidator(_storable)]
MessageText = Annotated[str, AfterValidator(_storable), AfterValidator(_not_blank)]
# `2025-01-01` means 00:00 UTC; otherwise an RFC 3339 date-time with its offset.
UtcDatetime = Annotated[
    AwareDatetime, BeforeValidator(_date_means_midnight), AfterValidator(_in_utc)
]


def parse_id(value: str, what: str) -> uuid.UUID:
    """A path id; a malformed one is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(what) from None
