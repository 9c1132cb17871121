"""Prometheus metrics shared by every service, and the `/metrics` payload."""

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

MESSAGES_RETRIED = Counter(
    "chat_sync_messages_retried_total",
    "Deliveries that failed and were sent to a delayed retry tier.",
    ["queue"],
)
MESSAGES_DEAD = Counter(
    "chat_sync_messages_dead_total",
    "Deliveries parked in a dead-letter queue after their last retry, or as undecodable.",
    ["queue"],
)


def render_metrics() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
