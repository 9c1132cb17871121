"""The one Alembic history of Chat Sync."""
