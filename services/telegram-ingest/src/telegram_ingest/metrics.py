"""What telegram-ingest counts: updates in, events out, refusals, and confirm times."""

from prometheus_client import Counter, Gauge, Histogram

UPDATES_RECEIVED = Counter(
    "telegram_ingest_updates_received_total",
    "Authenticated updates received, by update type (webhook and polling).",
    ["type"],
)
UPDATES_IGNORED = Counter(
    "telegram_ingest_updates_ignored_total",
    "Updates of a type this service does not map; answered 200, nothing published.",
    ["type"],
)
UPDATES_PARKED = Counter(
    "telegram_ingest_updates_parked_total",
    "Updates aiogram could not parse, published as telegram.update.unparsed.",
)
EVENTS_PUBLISHED = Counter(
    "telegram_ingest_events_published_total",
    "Events the broker confirmed, by routing key.",
    ["type"],
)
REQUESTS_REJECTED = Counter(
    "telegram_ingest_requests_rejected_total",
    "Webhook requests answered with an error, by reason.",
    ["reason"],
)
OWNER_LOOKUPS = Counter(
    "telegram_ingest_owner_lookups_total",
    "getBusinessConnection calls for connections not seen yet, by result.",
    ["result"],
)
# One set of bounds for both histograms, so an answer's time and its confirm's compare
# bucket by bucket: how much of the webhook's latency is RabbitMQ's.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CONFIRM_SECONDS = Histogram(
    "telegram_ingest_publish_confirm_seconds",
    "Time from publish to the broker's confirm (or failure).",
    buckets=LATENCY_BUCKETS,
)
WEBHOOK_SECONDS = Histogram(
    "telegram_ingest_webhook_seconds",
    "Time from a webhook request reaching the app to its answer, whatever the answer.",
    buckets=LATENCY_BUCKETS,
)
PUBLISHES_IN_FLIGHT = Gauge(
    "telegram_ingest_publishes_in_flight",
    "Publishes waiting for the broker's confirm.",
)
