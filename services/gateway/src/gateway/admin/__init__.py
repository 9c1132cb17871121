"""The admin UI (sqladmin) at `/admin/`: read-only views behind a login."""
