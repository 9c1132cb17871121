import json
import uuid
from datetime import UTC, datetime

from common.events import (
    BusinessConnection,
    ConnectionUpdated,
    CustomerUpdated,
    DealRead,
    MessageEdited,
    MessagesDeleted,
    MessageSendFailed,
    MessageSent,
    ReadSync,
    TelegramUser,
)
from common.ids import deal_id_for_telegram, telegram_message_key
from common.messages import message_view, telegram_message_item
from realtime import frames
from realtime.testing import message_received

OWNER = "111111111"
DEAL_ID = deal_id_for_telegram("AbC", "222222222")


def _frame(event: object, seq: int = 5) -> dict[str, object]:
    routed = frames.route(event)  # type: ignore[arg-type]
    assert routed is not None
    return dict(json.loads(frames.encode(seq, routed.body)))


def test_message_created_carries_the_message_as_the_gateway_serves_it() -> None:
    event = message_received(OWNER, "Hi! Is order #42 ready?", message_id=5012)
    item = telegram_message_item(
        deal_id=str(DEAL_ID),
        sort_key=telegram_message_key("5012"),
        business_connection_id="AbC",
        owner_user_id=OWNER,
        message=event.message,
    )

    frame = _frame(event, seq=812)

    assert frame == {
        "type": "message.created",
        "seq": 812,
        "deal_id": str(DEAL_ID),
        "business_connection_id": "AbC",
        "chat_id": "222222222",
        "occurred_at": frame["occurred_at"],
        "message": message_view(item),
    }
    assert str(frame["occurred_at"]).endswith("Z")


def test_reply_and_echo_share_one_duplicate_key() -> None:
    echo = message_received(OWNER, "our reply", message_id=7001)
    sent = MessageSent(
        deal_id=DEAL_ID,
        owner_user_id=OWNER,
        business_connection_id="AbC",
        chat_id="222222222",
        client_request_id="r1",
        message_id="7001",
        message=echo.message,
    )

    routed_sent, routed_echo = frames.route(sent), frames.route(echo)

    assert routed_sent is not None
    assert routed_echo is not None
    assert routed_sent.key == routed_echo.key
    assert routed_sent.body["type"] == routed_echo.body["type"] == "message.created"
    assert routed_sent.body["client_request_id"] == "r1"
    assert routed_sent.body["message"] == routed_echo.body["message"]


def test_sent_without_its_message_waits_for_the_echo() -> None:
    sent = MessageSent(deal_id=DEAL_ID, owner_user_id=OWNER, client_request_id="r", message_id="1")

    assert frames.route(sent) is None


def test_deal_event_without_owner_has_no_recipient() -> None:
    failed = MessageSendFailed(deal_id=DEAL_ID, client_request_id="r", reason="no_right")

    assert frames.route(failed) is None


def test_edited_and_deleted_frames() -> None:
    received = message_received(OWNER, "new text", message_id=9)
    edited_message = received.message.model_copy(
        update={"edit_date": datetime(2026, 1, 1, 2, tzinfo=UTC)}
    )
    edited = MessageEdited(
        owner_user_id=OWNER,
        update_id=2,
        business_connection_id="AbC",
        chat_id="222222222",
        message_id="9",
        message=edited_message,
    )
    deleted = MessagesDeleted(
        owner_user_id=OWNER,
        update_id=3,
        business_connection_id="AbC",
        chat_id="222222222",
        chat=received.message.chat,
        message_ids=["9", "8"],
    )

    edited_frame, deleted_frame = _frame(edited), _frame(deleted)

    assert edited_frame["type"] == "message.edited"
    assert edited_frame["message"]["edited"] is True  # type: ignore[index]
    assert deleted_frame["type"] == "message.deleted"
    assert deleted_frame["message_ids"] == ["9", "8"]
    assert deleted_frame["deal_id"] == str(DEAL_ID)


def test_read_send_failed_connection_and_customer_frames() -> None:
    read = DealRead(
        deal_id=DEAL_ID,
        owner_user_id=OWNER,
        read_up_to="5012",
        unread_count=0,
        read_sync=ReadSync(status="accepted"),
    )
    failed = MessageSendFailed(
        deal_id=DEAL_ID, owner_user_id=OWNER, client_request_id="r", reason="no_right"
    )
    connection = ConnectionUpdated(
        owner_user_id=OWNER,
        update_id=4,
        business_connection_id="AbC",
        connection=BusinessConnection(
            id="AbC",
            user=TelegramUser(id=OWNER),
            user_chat_id=OWNER,
            date=datetime(2026, 1, 1, tzinfo=UTC),
            is_enabled=True,
            rights={"can_reply": True},
        ),
    )
    customer_id = uuid.uuid4()
    customer = CustomerUpdated(
        customer_id=customer_id,
        avatar_key="avatars/x.jpg",
        owner_user_ids=[OWNER, OWNER],
        external_id="222222222",
        name="Boris Petrov",
    )

    assert _frame(read)["read_sync"] == {"status": "accepted", "reason": None}
    assert _frame(read)["read_up_to"] == "5012"
    assert (_frame(failed)["client_request_id"], _frame(failed)["reason"]) == ("r", "no_right")
    assert _frame(connection)["rights"] == {"can_reply": True}
    assert _frame(connection)["is_enabled"] is True
    assert _frame(customer)["customer"] == {
        "id": str(customer_id),
        "external_id": "222222222",
        "name": "Boris Petrov",
        "avatar": f"/api/v1/customers/{customer_id}/avatar/",
    }
    routed = frames.route(customer)
    assert routed is not None
    assert routed.streams == (OWNER,)
