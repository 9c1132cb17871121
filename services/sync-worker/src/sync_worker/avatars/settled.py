"""Customers whose avatar check is known not to be due, remembered for a while in-process.

Nearly every message comes from a customer checked minutes or hours ago; without this each
one costs a PostgreSQL transaction only to learn that. Only settled checks are remembered: one
this process finished, or one read from PostgreSQL that is older than any claim can last. A
fresh `avatar_checked_at` may be another worker's claim in progress, which it releases on a
transient failure; the retry of that delivery must then find the check due, wherever it lands.
"""

import uuid
from datetime import datetime, timedelta
from typing import Final

from common.events import utcnow

# Longer than a claim can last: a few Bot API calls of at most two minutes each.
CLAIM_MAX: Final = timedelta(minutes=15)
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
        """PostgreSQL says the check is fresh; remember it only if no claim can be open."""
        if checked_at < utcnow() - CLAIM_MAX:
            self._remember(customer_id, checked_at)

    def forget(self, customer_id: uuid.UUID) -> None:
        self._until.pop(customer_id, None)

    def _remember(self, customer_id: uuid.UUID, checked_at: datetime) -> None:
        if len(self._until) >= _MAX_ENTRIES:
            self._until.pop(next(iter(self._until)))  # the oldest entry
        self._until[customer_id] = min(checked_at + self._refresh, utcnow() + REMEMBER_FOR)
