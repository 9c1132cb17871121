"""Pure functions from aiogram's Telegram types to the event catalogue.

No I/O here: the caller resolves `owner_user_id` and hands over the raw update dict, so every
mapping is a plain function of its arguments and can be tested without a broker or a bot.
"""

from typing import Any

from aiogram import types as tg

from common.events import (
    BusinessConnection,
    ConnectionUpdated,
    MediaDescriptor,
    MessageEdited,
    MessageReceived,
    MessagesDeleted,
    TelegramChat,
    TelegramMessage,
    TelegramUser,
)


def user(value: tg.User) -> TelegramUser:
    return TelegramUser(
        id=value.id,
        is_bot=value.is_bot,
        first_name=value.first_name,
        last_name=value.last_name,
        username=value.username,
    )


def chat(value: tg.Chat) -> TelegramChat:
    return TelegramChat(
        id=value.id,
        type=value.type,
        title=value.title,
        first_name=value.first_name,
        last_name=value.last_name,
        username=value.username,
    )


def _entities(values: list[tg.MessageEntity] | None) -> list[dict[str, Any]]:
    return [entity.model_dump(mode="json", exclude_none=True) for entity in values or ()]


def _sticker_mime(sticker: tg.Sticker) -> str:
    # The Bot API gives stickers no mime type; their format follows from these two flags.
    if sticker.is_video:
        return "video/webm"
    if sticker.is_animated:
        return "application/x-tgsticker"
    return "image/webp"


def media(message: tg.Message) -> MediaDescriptor | None:
    """The message's one attachment, photos reduced to their largest size."""
    if message.photo:
        largest = max(
            message.photo, key=lambda size: (size.width * size.height, size.file_size or 0)
        )
        return MediaDescriptor(
            kind="photo",
            file_id=largest.file_id,
            file_unique_id=largest.file_unique_id,
            file_size=largest.file_size,
            width=largest.width,
            height=largest.height,
        )
    # An animation also arrives as `document` for old clients: look at it first.
    if animation := message.animation:
        return MediaDescriptor(
            kind="animation",
            file_id=animation.file_id,
            file_unique_id=animation.file_unique_id,
            file_size=animation.file_size,
            mime_type=animation.mime_type,
            file_name=animation.file_name,
            width=animation.width,
            height=animation.height,
            duration=animation.duration,
        )
    if video := message.video:
        return MediaDescriptor(
            kind="video",
            file_id=video.file_id,
            file_unique_id=video.file_unique_id,
            file_size=video.file_size,
            mime_type=video.mime_type,
            file_name=video.file_name,
            width=video.width,
            height=video.height,
            duration=video.duration,
        )
    if note := message.video_note:
        return MediaDescriptor(
            kind="video_note",
            file_id=note.file_id,
            file_unique_id=note.file_unique_id,
            file_size=note.file_size,
            mime_type="video/mp4",
            width=note.length,
            height=note.length,
            duration=note.duration,
        )
    if voice := message.voice:
        return MediaDescriptor(
            kind="voice",
            file_id=voice.file_id,
            file_unique_id=voice.file_unique_id,
            file_size=voice.file_size,
            mime_type=voice.mime_type,
            duration=voice.duration,
        )
    if audio := message.audio:
        return MediaDescriptor(
            kind="audio",
            file_id=audio.file_id,
            file_unique_id=audio.file_unique_id,
            file_size=audio.file_size,
            mime_type=audio.mime_type,
            file_name=audio.file_name,
            duration=audio.duration,
        )
    if sticker := message.sticker:
        return MediaDescriptor(
            kind="sticker",
            file_id=sticker.file_id,
            file_unique_id=sticker.file_unique_id,
            file_size=sticker.file_size,
            mime_type=_sticker_mime(sticker),
            width=sticker.width,
            height=sticker.height,
        )
    if document := message.document:
        return MediaDescriptor(
            kind="document",
            file_id=document.file_id,
            file_unique_id=document.file_unique_id,
            file_size=document.file_size,
            mime_type=document.mime_type,
            file_name=document.file_name,
        )
    return None


def message(value: tg.Message) -> TelegramMessage:
    reply = value.reply_to_message
    return TelegramMessage(
        message_id=value.message_id,
        chat=chat(value.chat),
        sender=user(value.from_user) if value.from_user else None,
        sender_business_bot=(
            user(value.sender_business_bot) if value.sender_business_bot else None
        ),
        date=value.date,
        edit_date=value.edit_date,
        text=value.text,
        entities=_entities(value.entities),
        caption=value.caption,
        caption_entities=_entities(value.caption_entities),
        media=media(value),
        reply_to_message_id=reply.message_id if reply else None,
    )


def connection(value: tg.BusinessConnection) -> BusinessConnection:
    if value.rights is not None:
        rights = value.rights.model_dump(mode="json", exclude_none=True)
    else:
        # Before Bot API 9.0 the only right was the top-level `can_reply`.
        rights = {"can_reply": True} if value.can_reply else {}
    return BusinessConnection(
        id=value.id,
        user=user(value.user),
        user_chat_id=value.user_chat_id,
        date=value.date,
        is_enabled=value.is_enabled,
        rights=rights,
    )


def connection_updated(
    value: tg.BusinessConnection, *, update_id: int, raw_update: dict[str, Any]
) -> ConnectionUpdated:
    """The owner of a connection is the user it belongs to; no lookup needed."""
    return ConnectionUpdated(
        owner_user_id=value.user.id,
        update_id=update_id,
        business_connection_id=value.id,
        raw_update=raw_update,
        connection=connection(value),
    )


def message_received(
    value: tg.Message, *, owner_user_id: str, update_id: int, raw_update: dict[str, Any]
) -> MessageReceived:
    return MessageReceived(
        owner_user_id=owner_user_id,
        update_id=update_id,
        business_connection_id=value.business_connection_id or "",
        raw_update=raw_update,
        chat_id=value.chat.id,
        message_id=value.message_id,
        message=message(value),
    )


def message_edited(
    value: tg.Message, *, owner_user_id: str, update_id: int, raw_update: dict[str, Any]
) -> MessageEdited:
    return MessageEdited(
        owner_user_id=owner_user_id,
        update_id=update_id,
        business_connection_id=value.business_connection_id or "",
        raw_update=raw_update,
        chat_id=value.chat.id,
        message_id=value.message_id,
        message=message(value),
    )


def messages_deleted(
    value: tg.BusinessMessagesDeleted,
    *,
    owner_user_id: str,
    update_id: int,
    raw_update: dict[str, Any],
) -> MessagesDeleted:
    return MessagesDeleted(
        owner_user_id=owner_user_id,
        update_id=update_id,
        business_connection_id=value.business_connection_id,
        raw_update=raw_update,
        chat_id=value.chat.id,
        chat=chat(value.chat),
        message_ids=list(value.message_ids),
    )
