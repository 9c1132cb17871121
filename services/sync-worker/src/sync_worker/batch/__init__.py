"""Batch sync from the external chat API (issue 8): one run at a time under a fenced lease,
resumable from its checkpoint, initial (down to `max_date`) or incremental runs.

Modules: `client` (the upstream), `lease` (who may write a run), `run` (retry list, then
the walk), `importer` (one chat), `items` (its DynamoDB items), `writes` (its PostgreSQL
transaction), `deps` (shared resources and shapes), `runner` (claims, heartbeat, scan),
`consumer` (the `sync.start` subscriber), `service` (wiring into a worker process),
`__main__` (standalone worker), `testing` (test support only).
"""
