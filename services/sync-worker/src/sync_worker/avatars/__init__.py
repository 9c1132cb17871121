"""The avatar worker: customer avatars and message media copied to S3 (see `subscribers`)."""

from sync_worker.avatars.resources import Avatars, open_avatars
from sync_worker.avatars.subscribers import QUEUES, router

__all__ = ["QUEUES", "Avatars", "open_avatars", "router"]
