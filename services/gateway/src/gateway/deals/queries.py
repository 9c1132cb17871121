"""Which deals a caller sees, and the cursor positions of the keyset walks over them.

Two walks: by activity (`last_message_at` desc, `id` desc; the partial listing indexes) and,
with `updated_since`, the change feed (`updated_at` asc, `id` asc; `ix_deal_updated_at`).
A cursor holds the walk, its direction and the key of the row it continues from, so a walk
visits every row not updated meanwhile exactly once, whatever is inserted around it. The
walks' statements are in `listing`.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, false, select, true
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
