import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import cast

from websockets.asyncio.server import ServerConnection

from common.events import SyncProgress
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


def test_frames_arriving_during_catch_up_follow_the_missed_ones() -> None:
    hub = _hub(events=10, hours=24)
    for seq in range(3):
        _publish(hub, seq, timedelta(0))
    client, missed = hub.attach(NO_CONNECTION, OWNER, is_admin=False, since=0)

    _publish(hub, 3, timedelta(0))
    queued = [hub.go_live(client), hub.go_live(client)]

    assert _texts(missed) == ["seq 1", "seq 2"]
    assert queued[0] is not None
    assert _texts([queued[0]]) == ["seq 3"]
    assert queued[1] is None
    assert client.pending is None


def test_admin_resume_merges_the_users_stream_with_sync_progress() -> None:
    hub = _hub(events=10, hours=24)
    _publish(hub, 0, timedelta(0))
    hub.publish(1, SyncProgress(task_id=uuid.uuid4(), status="running"))
    _publish(hub, 2, timedelta(0))
    hub.publish(3, SyncProgress(task_id=uuid.uuid4(), status="completed"))

    _admin, admin_missed = hub.attach(NO_CONNECTION, OWNER, is_admin=True, since=0)
    _owner, owner_missed = hub.attach(NO_CONNECTION, OWNER, is_admin=False, since=0)

    assert [json.loads(frame)["seq"] for frame in admin_missed] == [1, 2, 3]
    assert [json.loads(frame)["seq"] for frame in owner_missed] == [2]
