"""Which avatar checks the avatar worker remembers as settled, and for how long."""

import uuid
from datetime import timedelta

from common.events import utcnow
from sync_worker.avatars.settled import REMEMBER_FOR, SettledChecks

REFRESH = timedelta(hours=24)


def test_a_check_this_process_finished_is_fresh_until_forgotten() -> None:
    checks = SettledChecks(REFRESH)
    customer = uuid.uuid4()

    checks.finished(customer)
    remembered = checks.fresh(customer)
    checks.forget(customer)

    assert remembered
    assert not checks.fresh(customer)


def test_a_check_read_from_postgresql_is_remembered_however_recent() -> None:
    # A recent one may be another worker's open claim: retries do not ask this memory.
    checks = SettledChecks(REFRESH)
    just_claimed, old = uuid.uuid4(), uuid.uuid4()

    checks.read(just_claimed, utcnow())
    checks.read(old, utcnow() - timedelta(hours=23))

    assert checks.fresh(just_claimed)
    assert checks.fresh(old)


def test_a_check_is_remembered_no_longer_than_its_refresh_allows() -> None:
    checks = SettledChecks(timedelta(minutes=20))
    customer = uuid.uuid4()

    checks.read(customer, utcnow() - timedelta(minutes=20, seconds=1))

    assert not checks.fresh(customer)


def test_nothing_is_trusted_longer_than_remember_for() -> None:
    checks = SettledChecks(REFRESH)
    customer = uuid.uuid4()
    checks.finished(customer)

    until = checks._until[customer]

    assert until <= utcnow() + REMEMBER_FOR
