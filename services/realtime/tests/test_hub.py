import json
from datetime import UTC, datetime, timedelta
from typing import cast

from websockets.asyncio.server import ServerConnection

from realtime.hub import Hub
from realtime.testing import message_received

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
OWNER = "111111111"
NO_CONNECTION = cast(ServerConnection, object())  # attach only stores it


def _hub(events: int, hours: int) -> Hub:
    return Hub(retention_events=events, retention_seconds=hours * 3600, clock=NOW.timestamp)


def _publish(hub: Hub, seq: int, age: timedelta) -> None:
    event = message_received(OWNER, f"seq {seq}").model_copy(update={"occurred_at": NOW - age})
    hub.publish(seq, event)


def _texts(frames: list[bytes]) -> list[str]:
    return [json.loads(frame)["message"]["text"] for frame in frames]


def test_newest_events_are_kept_however_old() -> None:
    hub = _hub(events=3, hours=24)

    for seq in range(10):
        _publish(hub, seq, timedelta(days=30))

    assert list(hub.windows[OWNER].seqs) == [7, 8, 9]
    assert hub.windows[OWNER].floor == 6


def test_young_events_are_kept_beyond_the_newest_n() -> None:
    hub = _hub(events=3, hours=24)

    for seq in range(10):
        _publish(hub, seq, timedelta(hours=1))

    assert list(hub.windows[OWNER].seqs) == list(range(10))


def test_resume_inside_the_window_gets_exactly_the_later_frames() -> None:
    hub = _hub(events=3, hours=24)
    for seq in range(10):
        _publish(hub, seq, timedelta(days=30))

    _client, missed = hub.attach(NO_CONNECTION, OWNER, is_admin=False, since=7)

    assert _texts(missed) == ["seq 8", "seq 9"]


def test_resume_from_before_an_evicted_frame_answers_resync() -> None:
    hub = _hub(events=3, hours=24)
    for seq in range(10):
        _publish(hub, seq, timedelta(days=30))

    _client, missed = hub.attach(NO_CONNECTION, OWNER, is_admin=False, since=5)

    assert [json.loads(frame) for frame in missed] == [{"type": "resync", "seq": 9}]


def test_resume_from_before_the_journal_this_instance_read_answers_resync() -> None:
    hub = _hub(events=3, hours=24)
    for seq in range(100, 103):
        _publish(hub, seq, timedelta(0))

    _client, missed = hub.attach(NO_CONNECTION, "222222222", is_admin=False, since=50)

    assert json.loads(missed[0])["type"] == "resync"


def test_user_without_events_since_resumes_with_nothing_missed() -> None:
    hub = _hub(events=3, hours=24)
    for seq in range(100, 103):
        _publish(hub, seq, timedelta(0))

    client, missed = hub.attach(NO_CONNECTION, "222222222", is_admin=False, since=101)

    assert missed == []
    assert client.pending is None
