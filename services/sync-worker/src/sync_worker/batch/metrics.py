"""Prometheus counters of the batch sync (served by the worker's `/metrics`)."""

from prometheus_client import Counter

UPSTREAM_CALLS = Counter(
    "chat_sync_batch_upstream_calls_total",
    "Calls to the external chat API, by outcome (ok, retried, refused, unavailable).",
    ["outcome"],
)
CHATS = Counter(
    "chat_sync_batch_chats_total",
    "Upstream chats handled by batch sync runs, by outcome (imported, skipped, failed).",
    ["outcome"],
)
MESSAGES = Counter(
    "chat_sync_batch_messages_imported_total", "Messages new to Chat Sync imported by batch sync."
)
