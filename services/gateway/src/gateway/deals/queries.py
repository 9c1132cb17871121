"""Which deals a caller sees, and the keyset walks over them.

Two walks: by activity (`last_message_at` desc, `id` desc; the partial listing indexes) and,
with `updated_since`, the change feed (`updated_at` asc, `id` asc; `ix_deal_updated_at`).
A cursor holds the walk, its direction and the key of the row it continues from, so a walk
visits every row not updated meanwhile exactly once, whatever is inserted around it.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, false, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.models import Customer, Deal, MessageKey
from gateway.pagination import invalid_cursor

_BIGINT_MAX = 2**63 - 1
Walk = Literal["a", "u"]  # activity, updates
Direction = Literal["n", "p"]  # next, previous


@dataclass(frozen=True, slots=True)
class Filters:
    source: str | None = None
    business_connection_id: str | None = None
    unread: bool = False
    updated_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Position:
    walk: Walk
    direction: Direction
    at: datetime | None  # None: the activity walk's tail of deals without messages
    id: uuid.UUID

    def payload(self) -> dict[str, Any]:
        at = self.at.isoformat() if self.at is not None else None
        return {"w": self.walk, "d": self.direction, "t": at, "i": str(self.id)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], walk: Walk) -> "Position":
        try:
            if payload["w"] != walk or payload["d"] not in ("n", "p"):
                raise ValueError("another walk")
            at = None
            if payload["t"] is not None or walk == "u":
                at = datetime.fromisoformat(payload["t"])
                if at.tzinfo is None:
                    raise ValueError("naive")
            return cls(walk=walk, direction=payload["d"], at=at, id=uuid.UUID(payload["i"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise invalid_cursor() from None


def may_see(user: Principal) -> ColumnElement[bool]:
    """Own deals by owner; everything for an admin; ownerless deals for admins only."""
    if user.is_admin:
        return true()
    owner = int(user.user_id)
    return Deal.owner_user_id == owner if owner <= _BIGINT_MAX else false()


def _listed(user: Principal) -> Select[Deal, Customer]:
    return (
        select(Deal, Customer)
        .outerjoin(Customer, Customer.id == Deal.customer_id)
        .where(Deal.synced_at.is_not(None), may_see(user))
    )


@dataclass(frozen=True, slots=True)
class _Segment:
    """A stretch of a walk ordered by `columns` (descending unless `ascending`)."""

    name: str
    condition: ColumnElement[bool]
    columns: tuple[Any, ...]
    ascending: bool


def _segments(walk: Walk, filters: Filters) -> list[_Segment]:
    if walk == "u":
        assert filters.updated_since is not None
        since = Deal.updated_at >= filters.updated_since
        return [_Segment("t", since, (Deal.updated_at, Deal.id), ascending=True)]
    # Deals whose every message was deleted have no activity time: they come last, by id.
    return [
        _Segment("t", Deal.last_message_at.is_not(None), (Deal.last_message_at, Deal.id), False),
        _Segment("null", Deal.last_message_at.is_(None), (Deal.id,), ascending=False),
    ]


async def list_page(
    session: AsyncSession,
    user: Principal,
    filters: Filters,
    limit: int,
    position: Position | None,
) -> tuple[list[tuple[Deal, Customer | None]], bool]:
    """Up to `limit` rows in walk order, and whether more lie beyond them in that direction."""
    walk: Walk = "u" if filters.updated_since is not None else "a"
    query = _listed(user)
    if filters.source is not None:
        query = query.where(Deal.source == filters.source)
    if filters.business_connection_id is not None:
        query = query.where(Deal.business_connection_id == filters.business_connection_id)
    if filters.unread:
        query = query.where(Deal.unread_count > 0)
    segments = _segments(walk, filters)
    backwards = position is not None and position.direction == "p"
    # Walk on from the cursor's segment: forward through the later ones, or back to the start.
    here = len(segments) - 1 if position is not None and position.at is None else 0
    segments = list(reversed(segments[: here + 1])) if backwards else segments[here:]
    rows: list[tuple[Deal, Customer | None]] = []
    for index, segment in enumerate(segments):
        ascending = segment.ascending != backwards
        part = query.where(segment.condition)
        if position is not None and index == 0:
            values = (position.id,) if position.at is None else (position.at, position.id)
            key, bound = tuple_(*segment.columns), tuple_(*values)
            part = part.where(key > bound if ascending else key < bound)
        order = [column.asc() if ascending else column.desc() for column in segment.columns]
        found = (await session.execute(part.order_by(*order).limit(limit + 1 - len(rows)))).all()
        rows.extend((deal, customer) for deal, customer in found)
        if len(rows) > limit:
            break
    more = len(rows) > limit
    page = rows[:limit]
    if backwards:
        page.reverse()
    return page, more


def key_of(deal: Deal, walk: Walk) -> datetime | None:
    return deal.updated_at if walk == "u" else deal.last_message_at


async def get_visible(
    session: AsyncSession, user: Principal, deal_id: uuid.UUID
) -> tuple[Deal, Customer | None] | None:
    row = (await session.execute(_listed(user).where(Deal.id == deal_id))).first()
    return None if row is None else (row[0], row[1])


async def message_exists(session: AsyncSession, deal_id: uuid.UUID, message_id: str) -> bool:
    found = await session.scalar(
        select(MessageKey.message_id).where(
            MessageKey.deal_id == deal_id,
            MessageKey.message_id == message_id,
            MessageKey.state == "present",
        )
    )
    return found is not None
