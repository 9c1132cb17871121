"""sync_worker."""
