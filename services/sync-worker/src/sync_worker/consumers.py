"""The live-event subscribers: each hands its event to the batcher and returns once it is
committed, so the ack follows the commit. A failure goes through the retry tiers
(`common.bus.RetryMiddleware`); if even that republish fails, the delivery is nacked back.
"""

from typing import Annotated, Final

from faststream import AckPolicy, Context
from faststream.rabbit import Channel, RabbitRouter

from common.bus import EVENTS, consumer_queue
from common.events import ConnectionUpdated, MessageEdited, MessageReceived, MessagesDeleted
from sync_worker.batching import Batcher

SERVICE: Final = "sync-worker"
PREFETCH: Final = 200

router = RabbitRouter()
_channel = Channel(prefetch_count=PREFETCH)
_connection_updated = consumer_queue(SERVICE, "telegram.connection.updated")
_message_received = consumer_queue(SERVICE, "telegram.message.received")
_message_edited = consumer_queue(SERVICE, "telegram.message.edited")
_messages_deleted = consumer_queue(SERVICE, "telegram.messages.deleted")
QUEUES: Final = [
    queue.name
    for queue in (_connection_updated, _message_received, _message_edited, _messages_deleted)
]

LiveBatcher = Annotated[Batcher, Context("batcher")]


@router.subscriber(
    _connection_updated, EVENTS, channel=_channel, ack_policy=AckPolicy.NACK_ON_ERROR
)
async def on_connection_updated(event: ConnectionUpdated, batcher: LiveBatcher) -> None:
    await batcher.submit(event)


@router.subscriber(_message_received, EVENTS, channel=_channel, ack_policy=AckPolicy.NACK_ON_ERROR)
async def on_message_received(event: MessageReceived, batcher: LiveBatcher) -> None:
    await batcher.submit(event)


@router.subscriber(_message_edited, EVENTS, channel=_channel, ack_policy=AckPolicy.NACK_ON_ERROR)
async def on_message_edited(event: MessageEdited, batcher: LiveBatcher) -> None:
    await batcher.submit(event)


@router.subscriber(_messages_deleted, EVENTS, channel=_channel, ack_policy=AckPolicy.NACK_ON_ERROR)
async def on_messages_deleted(event: MessagesDeleted, batcher: LiveBatcher) -> None:
    await batcher.submit(event)
