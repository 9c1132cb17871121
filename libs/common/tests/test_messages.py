from datetime import UTC, datetime

from common.events import TelegramChat, TelegramMessage, TelegramUser
from common.messages import message_view, preview_text, telegram_message_item

OWNER = TelegramUser(id=111111111, first_name="Anna")
CUSTOMER = TelegramUser(id=222222222, first_name="Boris", last_name="Petrov")
BOT = TelegramUser(id=7000000001, is_bot=True, first_name="Bot")
CHAT = TelegramChat(id=222222222)
DATE = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)


def _item(message: TelegramMessage) -> dict[str, object]:
    return telegram_message_item(
        deal_id="d",
        sort_key="m#1",
        business_connection_id="c",
        owner_user_id="111111111",
        message=message,
    )


def test_customer_message_is_incoming() -> None:
    item = _item(TelegramMessage(message_id=1, chat=CHAT, sender=CUSTOMER, date=DATE, text="hi"))

    view = message_view(item)

    assert view["direction"] == "incoming"
    assert view["sent_by"] == "customer"
    assert view["sender"] == {"id": "222222222", "name": "Boris Petrov"}
    assert view["date"] == "2026-01-01T01:00:00Z"
    assert view["edited"] is False


def test_owner_and_bot_messages_are_outgoing() -> None:
    by_owner = _item(TelegramMessage(message_id=2, chat=CHAT, sender=OWNER, date=DATE))
    by_bot = _item(
        TelegramMessage(message_id=3, chat=CHAT, sender=OWNER, sender_business_bot=BOT, date=DATE)
    )

    assert (by_owner["direction"], by_owner["sent_by"]) == ("outgoing", "owner")
    assert (by_bot["direction"], by_bot["sent_by"]) == ("outgoing", "bot")


def test_preview_is_cut_and_falls_back_to_caption() -> None:
    long_text = _item(TelegramMessage(message_id=4, chat=CHAT, date=DATE, text="x" * 500))
    captioned = _item(TelegramMessage(message_id=5, chat=CHAT, date=DATE, caption="receipt"))

    assert len(preview_text(long_text)) == 200
    assert preview_text(captioned) == "receipt"
