"""The deals list's hot path: keyset pages read over a pool of its own and written straight
into the page's JSON.

The list is the API's busiest read, and building the statement, loading ORM entities and
validating twenty `DealOut` models cost several times the query itself. So each statement
shape is built with SQLAlchemy Core from the models once and compiled once; asyncpg prepares
it once per connection; rows become plain dicts that orjson writes once. The JSON is exactly
the `Page[DealOut]` schema the route declares (a test compares it with the model's output).
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import orjson
from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.engine import make_url

from common.auth import Principal
from common.models import Customer, Deal
from common.settings import Settings
from gateway.deals.queries import Direction, Filters, Position, Walk

_BIGINT_MAX = 2**63 - 1
_DIALECT = make_url("postgresql+asyncpg://").get_dialect()()
# Pydantic reads a preview's `date` leniently, as `LastMessage` does.
_PREVIEW_DATE: TypeAdapter[datetime | None] = TypeAdapter(datetime | None)
# A datetime comes out as pydantic writes it: `...T01:00:00Z`, `...T01:00:00.500000+03:00`.
_JSON_OPTIONS = orjson.OPT_UTC_Z

_COLUMNS = (
    Deal.id,
    Deal.source,
    Deal.external_id,
    Deal.business_connection_id,
    Deal.chat_id,
    Deal.owner_user_id,
    Deal.last_message_id,
    Deal.last_message_at,
    Deal.last_message,
    Deal.total_messages,
    Deal.unread_count,
    Deal.read_up_to,
    Deal.read_sync_status,
    Deal.read_sync_reason,
    Deal.created_at,
    Deal.updated_at,
    Customer.id.label("customer_id"),
    Customer.external_id.label("customer_external_id"),
    Customer.name.label("customer_name"),
    Customer.username.label("customer_username"),
    Customer.avatar_key.label("customer_avatar_key"),
    Customer.avatar_url.label("customer_avatar_url"),
)


class Reader(Protocol):
    """The part of an asyncpg connection the list uses."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


async def open_pool(settings: Settings) -> asyncpg.Pool:
    """The list's own small asyncpg pool.

    SQLAlchemy's pool costs as much CPU per checkout as the query (greenlet hand-offs, the
    pre-ping's BEGIN/SELECT/ROLLBACK, the reset on return). These connections only ever run
    the read-only statements below, so nothing needs resetting on release, and asyncpg
    replaces a connection the server closed when it is next acquired.
    """
    _args, options = _DIALECT.create_connect_args(make_url(settings.sqlalchemy_url))
    for sqlalchemy_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        options.pop(sqlalchemy_only, None)
    return await asyncpg.create_pool(
        **options,
        min_size=1,
        max_size=settings.database_pool_size,
        init=_json_codec,
        reset=_nothing_to_reset,
    )


async def _json_codec(connection: Any) -> None:
    await connection.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        format="text",
    )


async def _nothing_to_reset(_connection: Any) -> None:
    """Only single read-only statements run here: no session state to undo."""


Row = Any  # an asyncpg Record with the columns above


@dataclass(frozen=True, slots=True)
class _Shape:
    """What decides a statement's text; the values are bound per request."""

    admin: bool
    source: bool
    connection: bool
    unread: bool
    walk: Walk
    segment: int
    backwards: bool
    bounded: bool


@functools.cache
def _segments(walk: Walk) -> tuple[tuple[ColumnElement[bool], tuple[Any, ...], bool], ...]:
    """(condition, order columns, ascending) per stretch of the walk."""
    if walk == "u":
        since = Deal.updated_at >= bindparam("since", type_=Deal.updated_at.type)
        return ((since, (Deal.updated_at, Deal.id), True),)
    # Deals whose every message was deleted have no activity time: they come last, by id.
    return (
        (Deal.last_message_at.is_not(None), (Deal.last_message_at, Deal.id), False),
        (Deal.last_message_at.is_(None), (Deal.id,), False),
    )


@functools.cache
def _statement(shape: _Shape) -> tuple[str, tuple[str, ...]]:
    """The SQL of a shape and the names of its parameters in `$n` order."""
    query: Select[Any] = (
        select(*_COLUMNS)
        .outerjoin(Customer, Customer.id == Deal.customer_id)
        .where(Deal.synced_at.is_not(None))
    )
    if not shape.admin:
        query = query.where(Deal.owner_user_id == bindparam("owner", type_=BigInteger))
    if shape.source:
        query = query.where(Deal.source == bindparam("source", type_=Deal.source.type))
    if shape.connection:
        column = Deal.business_connection_id
        query = query.where(column == bindparam("connection", type_=column.type))
    if shape.unread:
        # A literal, so that even a generic plan can use the partial index on `unread_count > 0`.
        query = query.where(Deal.unread_count > literal_column("0"))
    condition, columns, ascending = _segments(shape.walk)[shape.segment]
    ascending = ascending != shape.backwards
    query = query.where(condition)
    if shape.bounded:
        names = ("at", "id") if len(columns) == 2 else ("id",)
        bound = tuple_(*(bindparam(n, type_=c.type) for n, c in zip(names, columns, strict=True)))
        key = tuple_(*columns)
        query = query.where(key > bound if ascending else key < bound)
    order = [column.asc() if ascending else column.desc() for column in columns]
    query = query.order_by(*order).limit(bindparam("limit", type_=Integer))
    compiled = query.compile(dialect=_DIALECT)
    return compiled.string, tuple(compiled.positiontup or ())


async def list_page(
    reader: Reader, user: Principal, filters: Filters, limit: int, position: Position | None
) -> tuple[list[Row], bool]:
    """Up to `limit` rows in walk order, and whether more lie beyond them in that direction."""
    owner = None if user.is_admin else int(user.user_id)
    if owner is not None and owner > _BIGINT_MAX:
        return [], False  # no deal can belong to this id
    walk: Walk = "u" if filters.updated_since is not None else "a"
    backwards = position is not None and position.direction == "p"
    count = len(_segments(walk))
    # Walk on from the cursor's segment: forward through the later ones, or back to the start.
    here = count - 1 if position is not None and position.at is None else 0
    order = list(reversed(range(here + 1))) if backwards else list(range(here, count))
    values: dict[str, Any] = {
        "owner": owner,
        "source": filters.source,
        "connection": filters.business_connection_id,
        "since": filters.updated_since,
        "at": position.at if position is not None else None,
        "id": position.id if position is not None else None,
    }
    rows: list[Row] = []
    for index, segment in enumerate(order):
        shape = _Shape(
            admin=owner is None,
            source=filters.source is not None,
            connection=filters.business_connection_id is not None,
            unread=filters.unread,
            walk=walk,
            segment=segment,
            backwards=backwards,
            bounded=position is not None and index == 0,
        )
        sql, names = _statement(shape)
        values["limit"] = limit + 1 - len(rows)
        rows.extend(await reader.fetch(sql, *(values[name] for name in names)))
        if len(rows) > limit:
            break
    more = len(rows) > limit
    page = rows[:limit]
    if backwards:
        page.reverse()
    return page, more


def position_of(row: Row, walk: Walk, direction: Direction) -> Position:
    at = row["updated_at"] if walk == "u" else row["last_message_at"]
    return Position(walk, direction, at, row["id"])


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _last_message(preview: dict[str, Any] | None) -> dict[str, Any] | None:
    if not preview:
        return None
    return {
        "text": str(preview.get("text") or ""),
        "direction": str(preview.get("direction") or "incoming"),
        "date": _PREVIEW_DATE.validate_python(preview.get("date")),
    }


def _deal(row: Row, base_url: str) -> dict[str, Any]:
    customer_id = row["customer_id"]
    customer = None
    if customer_id is not None:
        has_avatar = bool(row["customer_avatar_key"] or row["customer_avatar_url"])
        customer = {
            "id": str(customer_id),
            "external_id": row["customer_external_id"],
            "name": row["customer_name"],
            "username": row["customer_username"],
            "avatar": f"{base_url}/api/v1/customers/{customer_id}/avatar/" if has_avatar else None,
        }
    return {
        "id": str(row["id"]),
        "source": row["source"],
        "external_id": row["external_id"],
        "business_connection_id": row["business_connection_id"],
        "chat_id": _str(row["chat_id"]),
        "owner_user_id": _str(row["owner_user_id"]),
        "customer": customer,
        "last_message_id": row["last_message_id"],
        "last_message_at": row["last_message_at"],
        "last_message": _last_message(row["last_message"]),
        "total_messages": row["total_messages"],
        "unread_count": row["unread_count"],
        "read_up_to": row["read_up_to"],
        "read_sync": {"status": row["read_sync_status"], "reason": row["read_sync_reason"]},
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def render(
    rows: Sequence[Row], base_url: str, next_url: str | None, previous_url: str | None
) -> bytes:
    """The `Page[DealOut]` JSON of these rows; `base_url` has no trailing slash."""
    page = {
        "next": next_url,
        "previous": previous_url,
        "results": [_deal(row, base_url) for row in rows],
    }
    return orjson.dumps(page, option=_JSON_OPTIONS)
