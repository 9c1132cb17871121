"""Batch sync from the external chat API (issue 8): one run at a time under a fenced lease,
resumable from its checkpoint, initial (down to `max_date`) or incremental runs.

Modules: `client` (the upstream), `lease` (who may write a run), `importer` (one chat),
`run` (retry list, then the walk), `runner` (claims, heartbeat, scan), `consumer` (the
`sync.start` subscriber), `service` (wiring into a worker process), `__main__` (standalone).
"""
