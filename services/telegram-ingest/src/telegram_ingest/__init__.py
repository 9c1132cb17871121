"""telegram_ingest."""
