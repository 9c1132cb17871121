"""Commands that call Telegram: `deal.mark_read` and `message.send` (see `subscribers`)."""

from sync_worker.outbound.resources import Outbound, open_outbound
from sync_worker.outbound.subscribers import QUEUES, router

__all__ = ["QUEUES", "Outbound", "open_outbound", "router"]
