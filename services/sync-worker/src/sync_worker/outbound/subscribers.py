"""The outbound command subscribers.

Both command queues are single-active-consumer queues: any number of workers may subscribe,
RabbitMQ delivers to one of them at a time (the next takes over when it goes), and FastStream
handles one delivery per subscriber at a time. So the pace kept in that one process holds for
the whole deployment without a shared store, and replies to a chat leave in the order asked.
"""

from typing import Annotated, Final

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitQueue, RabbitRouter

from common.bus import COMMANDS, consumer_queue
from common.events import DealMarkRead, MessageSend
from sync_worker.context import LoopContext
from sync_worker.outbound.reading import mark_read
from sync_worker.outbound.resources import Outbound
from sync_worker.outbound.sending import send

SERVICE: Final = "sync-worker"
# Deliveries are handled one at a time; a few prefetched ones save a round trip each.
_channel = Channel(prefetch_count=10)


def single_active(queue: RabbitQueue) -> RabbitQueue:
    queue.arguments["x-single-active-consumer"] = True
    return queue


MARK_READ_QUEUE = single_active(consumer_queue(SERVICE, "deal.mark_read"))
MESSAGE_SEND_QUEUE = single_active(consumer_queue(SERVICE, "message.send"))
QUEUES: Final = [MARK_READ_QUEUE.name, MESSAGE_SEND_QUEUE.name]

OutboundDep = Annotated[Outbound, LoopContext("outbound")]

router = RabbitRouter()


@router.subscriber(MARK_READ_QUEUE, COMMANDS, channel=_channel, ack_policy=AckPolicy.NACK_ON_ERROR)
async def on_deal_mark_read(command: DealMarkRead, outbound: OutboundDep) -> None:
    await mark_read(outbound, command)


@router.subscriber(
    MESSAGE_SEND_QUEUE, COMMANDS, channel=_channel, ack_policy=AckPolicy.NACK_ON_ERROR
)
async def on_message_send(command: MessageSend, outbound: OutboundDep) -> None:
    await send(outbound, command)
