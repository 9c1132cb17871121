import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from common import events
from common.events import command_adapter, event_adapter

NOW = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
DEAL = uuid.uuid4()
USER = events.TelegramUser(id=222222222, first_name="Boris", last_name="Petrov")
CHAT = events.TelegramChat(id=222222222, first_name="Boris")
MESSAGE = events.TelegramMessage(message_id=5012, chat=CHAT, sender=USER, date=NOW, text="Hi")
TG = {"owner_user_id": 111111111, "update_id": 9, "business_connection_id": "conn-1"}

SAMPLES: list[events.Event] = [
    events.ConnectionUpdated(
        **TG,
        connection=events.BusinessConnection(
            id="conn-1",
            user=USER,
            user_chat_id=1,
            date=NOW,
            is_enabled=True,
            rights={"can_reply": True},
        ),
    ),
    events.MessageReceived(**TG, chat_id=222222222, message_id=5012, message=MESSAGE),
    events.MessageEdited(**TG, chat_id=222222222, message_id=5012, message=MESSAGE),
    events.MessagesDeleted(**TG, chat_id=222222222, chat=CHAT, message_ids=[5012, 5013]),
    events.UpdateUnparsed(update_id=1, error="bad", raw_update={"update_id": 1}),
    events.DealUpdated(deal_id=DEAL, version=3, unread_count=1, total_messages=2),
    events.DealRead(deal_id=DEAL, read_up_to="5012", unread_count=0),
    events.MessageSent(deal_id=DEAL, client_request_id="r1", message_id="5020"),
    events.MessageSendFailed(deal_id=DEAL, client_request_id="r1", reason="no_right"),
    events.SyncProgress(task_id=uuid.uuid4(), status="running", processed_chats=3),
    events.CustomerImported(customer_id=uuid.uuid4(), external_id="cust_1"),
    events.CustomerUpdated(customer_id=uuid.uuid4(), avatar_key="avatars/x.jpg"),
]
COMMANDS: list[events.Command] = [
    events.SyncStart(task_id=uuid.uuid4(), max_date=NOW),
    events.DealMarkRead(deal_id=DEAL, message_id="5012"),
    events.MessageSend(deal_id=DEAL, client_request_id="r1", text="Hello"),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: str(e.type))
def test_event_round_trips_through_json(event: events.Event) -> None:
    wire = event.model_dump_json()

    parsed = event_adapter.validate_json(wire)

    assert parsed == event
    assert type(parsed) is type(event)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c.type))
def test_command_round_trips_through_json(command: events.Command) -> None:
    parsed = command_adapter.validate_json(command.model_dump_json())

    assert parsed == command


def test_ids_are_strings_on_the_wire() -> None:
    body = SAMPLES[1].model_dump(mode="json")

    assert body["owner_user_id"] == "111111111"
    assert body["chat_id"] == "222222222"
    assert body["message"]["message_id"] == "5012"


def test_events_are_frozen() -> None:
    with pytest.raises(ValidationError):
        SAMPLES[5].unread_count = 7  # type: ignore[attr-defined]


def test_unknown_fields_are_ignored_by_readers() -> None:
    wire = SAMPLES[5].model_dump(mode="json") | {"added_later": 1}

    parsed = event_adapter.validate_python(wire)

    assert parsed == SAMPLES[5]


def test_reply_text_over_4096_characters_is_refused() -> None:
    with pytest.raises(ValidationError):
        events.MessageSend(deal_id=DEAL, client_request_id="r", text="x" * 4097)
