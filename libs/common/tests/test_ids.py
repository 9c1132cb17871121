import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import ids


def test_deal_id_is_the_same_for_the_same_source_identity() -> None:
    first = ids.deal_id_for_telegram("AbC", 222222222)
    second = ids.deal_id_for_telegram("AbC", "222222222")

    assert first == second
    assert first.version == 5


def test_telegram_and_external_deals_never_share_an_id() -> None:
    assert ids.deal_id_for_telegram("x", 1) != ids.deal_id_for_external("1")
    assert ids.deal_id_for_external("chat_1") == uuid.uuid5(ids.CHAT_SYNC_NAMESPACE, "ext:chat_1")


@given(st.integers(0, 10**12 - 1), st.integers(0, 10**12 - 1))
def test_message_keys_sort_like_message_ids(a: int, b: int) -> None:
    assert (ids.telegram_message_key(a) < ids.telegram_message_key(b)) == (a < b)


def test_message_key_refuses_out_of_range_ids() -> None:
    with pytest.raises(ValueError, match="out of range"):
        ids.telegram_message_key(-1)


def test_versions_sort_apart_from_messages_and_by_edit_date() -> None:
    key = ids.telegram_message_key(5012)

    older, newer = ids.version_key(key, 100), ids.version_key(key, 200)

    assert not older.startswith("m#")
    assert older.startswith(ids.version_prefix(key))
    assert older < newer


def test_imported_keys_sort_by_time() -> None:
    early = ids.imported_message_key(datetime(2025, 1, 1, tzinfo=UTC), "zzz")
    late = ids.imported_message_key(datetime(2025, 1, 2, tzinfo=UTC), "aaa")

    assert early < late
