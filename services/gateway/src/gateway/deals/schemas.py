"""The deal and message JSON the API serves and accepts."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.inputs import MessageText, StorableText

EXAMPLE_DEAL_ID = "9b2d6c8e-3f1a-5b7c-9d0e-1f2a3b4c5d6e"
EXAMPLE_CUSTOMER_ID = "4e5f6a7b-8c9d-5e0f-a1b2-c3d4e5f6a7b8"


class CustomerOut(BaseModel):
    id: str = Field(examples=[EXAMPLE_CUSTOMER_ID])
    external_id: str = Field(examples=["222222222"])
    name: str = Field(examples=["Boris Petrov"])
    username: str | None = Field(examples=["boris_p"])
    avatar: str | None = Field(
        description="Stable gateway URL that redirects (302) to the picture, or null.",
        examples=[f"http://localhost:8000/api/v1/customers/{EXAMPLE_CUSTOMER_ID}/avatar/"],
    )


class LastMessage(BaseModel):
    text: str = Field(examples=["Hi! Is order #42 ready?"])
    direction: str = Field(examples=["incoming"])
    date: datetime | None = None


class ReadSync(BaseModel):
    status: str | None = Field(
        description="`accepted`, `refused`, `pending` or null: did Telegram take the read mark.",
        examples=["accepted"],
    )
    reason: str | None = Field(examples=[None])


class DealOut(BaseModel):
    id: str = Field(examples=[EXAMPLE_DEAL_ID])
    source: str = Field(examples=["telegram"])
    external_id: str = Field(examples=["tg:AbCdEf:222222222"])
    business_connection_id: str | None = Field(examples=["AbCdEf"])
    chat_id: str | None = Field(examples=["222222222"])
    owner_user_id: str | None = Field(examples=["111111111"])
    customer: CustomerOut | None
    last_message_id: str | None = Field(examples=["5012"])
    last_message_at: datetime | None
    last_message: LastMessage | None
    total_messages: int = Field(examples=[3])
    unread_count: int = Field(examples=[1])
    read_up_to: str | None = Field(examples=["5011"])
    read_sync: ReadSync
    created_at: datetime
    updated_at: datetime


class Sender(BaseModel):
    id: str | None = Field(default=None, examples=["222222222"])
    name: str | None = Field(default=None, examples=["Boris Petrov"])


class MediaOut(BaseModel):
    kind: str | None = Field(examples=["photo"])
    status: str = Field(examples=["stored"])
    url: str | None = Field(description="Presigned S3 URL once stored.")
    file_name: str | None
    mime_type: str | None
    size: int | None


class Version(BaseModel):
    text: str | None
    edit_date: str | None


class MessageOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(examples=["5012"])
    direction: str = Field(examples=["incoming"])
    sender: Sender | None
    sent_by: str = Field(examples=["customer"])
    text: str | None = Field(examples=["Hi! Is order #42 ready?"])
    entities: list[dict[str, Any]]
    media: MediaOut | None
    date: str | None = Field(examples=["2026-01-01T01:00:00Z"])
    edit_date: str | None
    edited: bool
    versions: list[Version] = Field(description="Earlier texts, oldest first.")
    deleted: bool
    deleted_at: str | None
    source: str = Field(examples=["live"])
    reply_to_message_id: str | None


class DealDetail(DealOut):
    messages: list[MessageOut] = Field(description="The latest 50 messages, oldest first.")
    messages_next: str | None = Field(description="Absolute URL of older messages, or null.")


class MarkReadIn(BaseModel):
    message_id: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Read up to this message; the newest when absent.",
        examples=["5012"],
    )


class MarkReadOut(BaseModel):
    deal_id: str = Field(examples=[EXAMPLE_DEAL_ID])
    read_up_to: str | None = Field(examples=["5012"])


class SendIn(BaseModel):
    text: MessageText = Field(min_length=1, max_length=4096, examples=["Yes, it is ready!"])
    reply_to_message_id: str | None = Field(
        default=None, pattern=r"^[1-9][0-9]{0,11}$", examples=["5012"]
    )
    client_request_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._:-]{1,128}$",
        description="Your idempotency key; generated when absent. A repeated id sends nothing.",
        examples=["3f0c1d2e-reply-1"],
    )


class SendOut(BaseModel):
    client_request_id: str = Field(examples=["3f0c1d2e-reply-1"])
    status: Literal["queued"] = "queued"
    status_url: str


class RequestStatus(BaseModel):
    client_request_id: str = Field(examples=["3f0c1d2e-reply-1"])
    status: Literal["queued", "sending", "sent", "failed", "unknown"] = Field(
        description=(
            "`queued` until the sync-worker picks the request up; `unknown` when a worker "
            "crashed while sending: replies are sent at most once, never retried."
        ),
        examples=["sent"],
    )
    message_id: str | None = Field(examples=["5013"])
    reason: str | None = Field(examples=[None])
