"""Sync start request, its acceptance and the run's status document."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from gateway.inputs import UtcDatetime

EXAMPLE_TASK_ID = "0c7b5a4e-1d2f-4a3b-8c9d-0e1f2a3b4c5d"


class SyncStartIn(BaseModel):
    max_date: UtcDatetime | None = Field(
        default=None,
        description=(
            "How far back to import: `2025-01-01` means 00:00 UTC, or an RFC 3339 date-time. "
            "Absent: everything, or the failed run's `max_date` when resuming it."
        ),
        examples=["2025-01-01", "2025-01-01T12:00:00+02:00"],
    )


class SyncStarted(BaseModel):
    task_id: str = Field(examples=[EXAMPLE_TASK_ID])
    status: Literal["pending"] = "pending"
    status_url: str
    resumed_from: str | None = Field(
        default=None, description="The failed run this one continues from, if any."
    )


class SyncStatus(BaseModel):
    task_id: str = Field(examples=[EXAMPLE_TASK_ID])
    status: str = Field(description="`pending`, `running`, `completed` or `failed`.")
    resumed_from: str | None
    max_date: datetime | None
    processed_chats: int
    imported_messages: int
    skipped_chats: int
    failed_chats: int
    retry_chats: list[str] = Field(
        description="Upstream chats on the retry list, retried first by the next run.",
        examples=[["chat_0042"]],
    )
    cursor: str | None
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    error: str | None
