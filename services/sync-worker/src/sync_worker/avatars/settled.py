"""Customers whose avatar check is known not to be due, remembered for a while in-process.

Nearly every message comes from a customer checked minutes or hours ago; without this each
one costs a PostgreSQL transaction only to learn that. Every check found fresh is remembered,
also one another worker may still hold as a claim: that worker releases it on a transient
failure and its delivery goes through the retry tiers, and a retried delivery asks PostgreSQL,
not this memory (`retry` in `customers`), wherever it lands. So the retry still finds the check
due, and a worker that restarts among busy customers does not read PostgreSQL per message.
"""

import uuid
from datetime import datetime, timedelta
from typing import Final

from common.events import utcnow

# How long a remembered check is trusted without asking PostgreSQL again.
REMEMBER_FOR: Final = timedelta(minutes=10)
_MAX_ENTRIES: Final = 100_000


class SettledChecks:
    def __init__(self, refresh: timedelta) -> None:
        self._refresh = refresh
        self._until: dict[uuid.UUID, datetime] = {}

    def fresh(self, customer_id: uuid.UUID) -> bool:
        until = self._until.get(customer_id)
        if until is None:
            return False
        if until > utcnow():
            return True
        del self._until[customer_id]
        return False

    def finished(self, customer_id: uuid.UUID) -> None:
        """This process recorded a check just now."""
        self._remember(customer_id, utcnow())

    def read(self, customer_id: uuid.UUID, checked_at: datetime) -> None:
        """PostgreSQL says the check is fresh."""
        self._remember(customer_id, checked_at)

    def forget(self, customer_id: uuid.UUID) -> None:
        self._until.pop(customer_id, None)

    def _remember(self, customer_id: uuid.UUID, checked_at: datetime) -> None:
        if len(self._until) >= _MAX_ENTRIES:
            self._until.pop(next(iter(self._until)))  # the oldest entry
        self._until[customer_id] = min(checked_at + self._refresh, utcnow() + REMEMBER_FOR)
