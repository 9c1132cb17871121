"""The PostgreSQL schema. DynamoDB holds message bodies; PostgreSQL holds everything that is
listed, counted, locked or decided (is this message new? who holds the sync lease?).

Telegram ids are BIGINT here and strings in JSON. Timestamps are `timestamptz`, named `*_at`.
"""

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: Timestamp, dict[str, Any]: JSONB}


def _created() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


def _updated() -> Mapped[datetime]:
    return mapped_column(server_default=func.now(), onupdate=func.now())


class TelegramUser(Base):
    """A business account owner, as Telegram last described them."""

    __tablename__ = "telegram_user"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str] = mapped_column(Text, default="")
    last_name: Mapped[str | None] = mapped_column(Text)
    username: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class BusinessConnection(Base):
    __tablename__ = "business_connection"

    id: Mapped[str] = mapped_column(String(256), primary_key=True)
    owner_user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rights: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # `pending` until the connection update itself arrives (a message may come first).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Telegram's `date` of the newest connection update applied; older ones are ignored.
    # Enabling and disabling keep the connection's `date`, so `update_id` breaks the tie.
    source_date: Mapped[datetime | None]
    source_update_id: Mapped[int | None] = mapped_column(BigInteger)
    connected_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Customer(Base):
    __tablename__ = "customer"
    __table_args__ = (
        Index("uq_customer_source_external_id", "source", "external_id", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # telegram | external
    external_id: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text, default="")
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    username: Mapped[str | None] = mapped_column(Text)
    # Date of the newest update the names came from: an older update never overwrites them.
    source_date: Mapped[datetime | None]
    avatar_url: Mapped[str | None] = mapped_column(Text)  # the upstream's original URL
    avatar_key: Mapped[str | None] = mapped_column(Text)  # S3 key once stored
    # Indexed: "is this photo already stored for anyone?" decides whether to upload again.
    avatar_file_unique_id: Mapped[str | None] = mapped_column(Text, index=True)
    avatar_checked_at: Mapped[datetime | None]
    avatar_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Deal(Base):
    """One customer chat: a Telegram (connection, chat) or an imported upstream chat."""

    __tablename__ = "deal"
    __table_args__ = (
        # The list: the caller's visible deals, newest activity first, keyset on (at, id).
        Index(
            "ix_deal_owner_listing",
            "owner_user_id",
            text("last_message_at DESC"),
            text("id DESC"),
            postgresql_where=text("synced_at IS NOT NULL"),
        ),
        Index(
            "ix_deal_listing",
            text("last_message_at DESC"),
            text("id DESC"),
            postgresql_where=text("synced_at IS NOT NULL"),
        ),
        Index(
            "ix_deal_source_listing",
            "source",
            text("last_message_at DESC"),
            text("id DESC"),
            postgresql_where=text("synced_at IS NOT NULL"),
        ),
        Index("ix_deal_updated_at", "updated_at", "id"),
        Index("ix_deal_business_connection_id", "business_connection_id"),
        Index(
            "ix_deal_unread",
            "owner_user_id",
            text("last_message_at DESC"),
            text("id DESC"),
            postgresql_where=text("synced_at IS NOT NULL AND unread_count > 0"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # telegram | external
    external_id: Mapped[str] = mapped_column(Text, unique=True)
    business_connection_id: Mapped[str | None] = mapped_column(String(256))
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    owner_user_id: Mapped[int | None] = mapped_column(BigInteger)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customer.id"), index=True
    )
    last_message_id: Mapped[str | None] = mapped_column(Text)
    last_message_key: Mapped[str | None] = mapped_column(Text)
    last_message_at: Mapped[datetime | None]
    last_message: Mapped[dict[str, Any] | None]  # preview: text (~200 chars), direction, date
    total_messages: Mapped[int] = mapped_column(Integer, default=0)
    unread_count: Mapped[int] = mapped_column(Integer, default=0)
    read_up_to: Mapped[str | None] = mapped_column(Text)  # message id of the read horizon
    read_horizon_key: Mapped[str | None] = mapped_column(Text)  # its sort key
    read_sync_status: Mapped[str | None] = mapped_column(String(16))
    read_sync_reason: Mapped[str | None] = mapped_column(Text)
    read_sync_at: Mapped[datetime | None]
    # Set once the customer row and at least one message are written: only then is it listed.
    synced_at: Mapped[datetime | None]
    sync_status: Mapped[str] = mapped_column(String(16), default="partial")
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class MessageKey(Base):
    """Decides, inside the counters' transaction, whether a message is new to its deal."""

    __tablename__ = "message_key"
    __table_args__ = (
        Index(
            "ix_message_key_unread",
            "deal_id",
            "sort_key",
            postgresql_where=text("direction = 'incoming' AND source = 'live' AND NOT deleted"),
        ),
    )

    deal_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    message_id: Mapped[str] = mapped_column(Text, primary_key=True)
    sort_key: Mapped[str] = mapped_column(Text)
    direction: Mapped[str] = mapped_column(String(8))  # incoming | outgoing
    source: Mapped[str] = mapped_column(String(8))  # live | imported
    # `present` once the message itself is stored; `tombstone` for a delete seen first.
    state: Mapped[str] = mapped_column(String(16), default="present")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    sent_at: Mapped[datetime | None]
    edit_date: Mapped[datetime | None]  # newest edit applied
    created_at: Mapped[datetime] = _created()


class SendRequest(Base):
    """A reply asked for through the API. At most once: `sending` after a crash is `unknown`."""

    __tablename__ = "send_request"

    deal_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("deal.id"), primary_key=True
    )
    client_request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    reply_to_message_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    message_id: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class SyncRun(Base):
    """One batch import. At most one is active (pending or running), by a partial unique index."""

    __tablename__ = "sync_run"
    __table_args__ = (
        Index(
            "uq_sync_run_active",
            text("(true)"),
            unique=True,
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
        Index("ix_sync_run_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    kind: Mapped[str | None] = mapped_column(String(16))  # initial | incremental
    resumed_from: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    max_date: Mapped[datetime | None]
    requested_by: Mapped[int | None] = mapped_column(BigInteger)
    processed_chats: Mapped[int] = mapped_column(Integer, default=0)
    imported_messages: Mapped[int] = mapped_column(Integer, default=0)
    skipped_chats: Mapped[int] = mapped_column(Integer, default=0)
    failed_chats: Mapped[int] = mapped_column(Integer, default=0)
    # Checkpoint: the upstream page cursor, the position inside it, and inside a long chat.
    cursor: Mapped[str | None] = mapped_column(Text)
    page_position: Mapped[int] = mapped_column(Integer, default=0)
    chat_cursor: Mapped[str | None] = mapped_column(Text)
    checkpoint: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Lease: whoever holds the newest fencing token may write checkpoints.
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None]
    fencing_token: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class SyncRetryChat(Base):
    """An upstream chat whose import failed; retried first by every later run until it works."""

    __tablename__ = "sync_retry_chat"

    chat_id: Mapped[str] = mapped_column(Text, primary_key=True)
    # The upstream chat as last listed: the API cannot fetch one chat by id.
    chat: Mapped[dict[str, Any] | None]
    first_failed_run: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Outbox(Base):
    """Messages written in a business transaction and published after it commits."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    exchange: Mapped[str] = mapped_column(String(64))
    routing_key: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = _created()
    published_at: Mapped[datetime | None]
