"""The outbound command subscribers.

Both command queues are single-active-consumer queues: any number of workers may subscribe,
RabbitMQ delivers to one of them at a time (the next takes over when it goes), and FastStream
handles one delivery per subscriber at a time. So the pace kept in that one process holds for
the whole deployment without a shared store, and replies to a chat leave in the order asked.
"""

from typing import Annotated, Final

from faststream import AckPolicy, Context
from faststream.rabbit import RabbitQueue, RabbitRouter

from common.bus import COMMANDS, consumer_queue
from common.events import DealMarkRead, MessageSend
from sync_worker.outbound.reading import mark_read
from sync_worker.outbound.resources import Outbound
from sync_worker.outbound.sending import send

SERVICE: Final = "sync-worker"


def single_active(queue: RabbitQueue) -> RabbitQueue:
    queue.arguments["x-single-active-consumer"] = True
    return queue


_mark_read = single_active(consumer_queue(SERVICE, "deal.mark_read"))
_message_send = single_active(consumer_queue(SERVICE, "message.send"))
QUEUES: Final = [_mark_read.name, _message_send.name]

OutboundDep = Annotated[Outbound, Context("outbound")]

router = RabbitRouter()


@router.subscriber(_mark_read, COMMANDS, ack_policy=AckPolicy.NACK_ON_ERROR)
async def on_deal_mark_read(command: DealMarkRead, outbound: OutboundDep) -> None:
    await mark_read(outbound, command)


@router.subscriber(_message_send, COMMANDS, ack_policy=AckPolicy.NACK_ON_ERROR)
async def on_message_send(command: MessageSend, outbound: OutboundDep) -> None:
    await send(outbound, command)
