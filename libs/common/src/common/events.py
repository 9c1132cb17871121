"""The event catalogue: every message that crosses RabbitMQ, as a frozen Pydantic model.

Each model's `type` is also its routing key. Changes are additive only: a new optional field,
or a new model with a new `type`. Readers are tolerant: unknown fields are ignored.
Ids are strings in JSON, as everywhere in Chat Sync.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter


def _to_str(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# Telegram sends numeric ids; Chat Sync's JSON carries them as strings.
Id = Annotated[str, BeforeValidator(_to_str)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Event(Contract):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=utcnow)


# --- pieces of Telegram events -------------------------------------------------------------


class TelegramUser(Contract):
    id: Id
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


class TelegramChat(Contract):
    id: Id
    type: str = "private"
    title: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None


MediaKind = Literal[
    "photo", "document", "voice", "video", "video_note", "audio", "animation", "sticker"
]


class MediaDescriptor(Contract):
    kind: MediaKind
    file_id: str
    file_unique_id: str
    file_size: int | None = None
    mime_type: str | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    duration: int | None = None


class TelegramMessage(Contract):
    """A business message, normalised: what the archive and the live view need."""

    message_id: Id
    chat: TelegramChat
    sender: TelegramUser | None = None
    sender_business_bot: TelegramUser | None = None
    date: datetime
    edit_date: datetime | None = None
    text: str | None = None
    entities: list[dict[str, Any]] = Field(default_factory=list)
    caption: str | None = None
    caption_entities: list[dict[str, Any]] = Field(default_factory=list)
    media: MediaDescriptor | None = None
    reply_to_message_id: Id | None = None


class BusinessConnection(Contract):
    id: str
    user: TelegramUser
    user_chat_id: Id
    date: datetime
    is_enabled: bool
    rights: dict[str, Any] = Field(default_factory=dict)


class TelegramEvent(Event):
    owner_user_id: Id
    update_id: int
    business_connection_id: str
    raw_update: dict[str, Any] = Field(default_factory=dict)


# --- telegram-ingest -----------------------------------------------------------------------


class ConnectionUpdated(TelegramEvent):
    type: Literal["telegram.connection.updated"] = "telegram.connection.updated"
    connection: BusinessConnection


class MessageReceived(TelegramEvent):
    type: Literal["telegram.message.received"] = "telegram.message.received"
    chat_id: Id
    message_id: Id
    message: TelegramMessage


class MessageEdited(TelegramEvent):
    type: Literal["telegram.message.edited"] = "telegram.message.edited"
    chat_id: Id
    message_id: Id
    message: TelegramMessage


class MessagesDeleted(TelegramEvent):
    type: Literal["telegram.messages.deleted"] = "telegram.messages.deleted"
    chat_id: Id
    chat: TelegramChat
    message_ids: list[Id]


class UpdateUnparsed(Event):
    """An authenticated update aiogram could not parse, parked for a person to look at."""

    type: Literal["telegram.update.unparsed"] = "telegram.update.unparsed"
    update_id: int
    error: str
    raw_update: dict[str, Any]


# --- sync-worker -----------------------------------------------------------------------------


class MessagePreview(Contract):
    text: str
    direction: Literal["incoming", "outgoing"]
    date: datetime


class DealEvent(Event):
    deal_id: uuid.UUID
    owner_user_id: Id | None = None
    business_connection_id: str | None = None
    chat_id: Id | None = None


class DealUpdated(DealEvent):
    type: Literal["deal.updated"] = "deal.updated"
    version: int
    unread_count: int
    total_messages: int
    last_message_id: Id | None = None
    last_message_at: datetime | None = None
    last_message: MessagePreview | None = None


class ReadSync(Contract):
    status: Literal["accepted", "refused", "pending"] | None = None
    reason: str | None = None


class DealRead(DealEvent):
    type: Literal["deal.read"] = "deal.read"
    read_up_to: Id | None = None
    unread_count: int
    read_sync: ReadSync = Field(default_factory=ReadSync)


class MessageSent(DealEvent):
    type: Literal["message.sent"] = "message.sent"
    client_request_id: str
    message_id: Id
    message: TelegramMessage | None = None


class MessageSendFailed(DealEvent):
    type: Literal["message.send_failed"] = "message.send_failed"
    client_request_id: str
    reason: str


class SyncProgress(Event):
    type: Literal["sync.progress"] = "sync.progress"
    task_id: uuid.UUID
    status: Literal["pending", "running", "completed", "failed"]
    processed_chats: int = 0
    imported_messages: int = 0
    skipped_chats: int = 0
    failed_chats: int = 0


class CustomerImported(Event):
    type: Literal["customer.imported"] = "customer.imported"
    customer_id: uuid.UUID
    external_id: str
    avatar_url: str | None = None
    owner_user_id: Id | None = None


# --- avatar worker ---------------------------------------------------------------------------


class CustomerUpdated(Event):
    type: Literal["customer.updated"] = "customer.updated"
    customer_id: uuid.UUID
    avatar_key: str | None = None
    owner_user_ids: list[Id] = Field(default_factory=list)
    # Added so a live view can show the customer as the gateway serves it without a reload.
    external_id: str | None = None
    name: str | None = None
    username: str | None = None


# --- commands (gateway -> sync-worker) -------------------------------------------------------


class Command(Event):
    requested_by: Id | None = None


class SyncStart(Command):
    type: Literal["sync.start"] = "sync.start"
    task_id: uuid.UUID
    max_date: datetime | None = None


class DealMarkRead(Command):
    type: Literal["deal.mark_read"] = "deal.mark_read"
    deal_id: uuid.UUID
    message_id: Id | None = None


class MessageSend(Command):
    type: Literal["message.send"] = "message.send"
    deal_id: uuid.UUID
    client_request_id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1, max_length=4096)
    reply_to_message_id: Id | None = None


TELEGRAM_EVENTS: tuple[type[TelegramEvent], ...] = (
    ConnectionUpdated,
    MessageReceived,
    MessageEdited,
    MessagesDeleted,
)

AnyEvent = Annotated[
    ConnectionUpdated
    | MessageReceived
    | MessageEdited
    | MessagesDeleted
    | UpdateUnparsed
    | DealUpdated
    | DealRead
    | MessageSent
    | MessageSendFailed
    | SyncProgress
    | CustomerImported
    | CustomerUpdated,
    Field(discriminator="type"),
]
AnyCommand = Annotated[SyncStart | DealMarkRead | MessageSend, Field(discriminator="type")]

event_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
command_adapter: TypeAdapter[AnyCommand] = TypeAdapter(AnyCommand)
