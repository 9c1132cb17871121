"""Prometheus metrics of realtime, served by `/metrics` with the shared ones."""

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("realtime_connections", "Open WebSocket connections listening to a stream.")
FRAMES_SENT = Counter("realtime_frames_sent_total", "Frames written to WebSocket connections.")
SLOW_CLOSES = Counter(
    "realtime_slow_client_closes_total", "Connections closed with 4008 for falling behind."
)
RESYNCS = Counter("realtime_resyncs_total", "Resumes answered with a resync frame.")
AUTH_CLOSES = Counter("realtime_auth_closes_total", "Connections closed for their token.", ["code"])
SEQ = Gauge("realtime_journal_seq", "The newest journal offset this instance has read.")
