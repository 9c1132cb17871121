"""The live-event subscribers: each hands its event to the batcher and returns once it is
committed, so the ack follows the commit. A failure goes through the retry tiers
(`common.bus.RetryMiddleware`); if even that republish fails, the delivery is nacked back.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, TypeVar

from faststream import AckPolicy, StreamMessage
from faststream.rabbit import Channel, RabbitQueue, RabbitRouter
from faststream.rabbit.subscriber import RabbitSubscriber

from common.bus import EVENTS, consumer_queue
from common.events import ConnectionUpdated, Event, MessageEdited, MessageReceived, MessagesDeleted
from sync_worker.batching import MAX_BATCH, Batcher
from sync_worker.context import LoopContext
from sync_worker.parties import LiveEvent

SERVICE: Final = "sync-worker"
# Deliveries in flight per queue: one batch being committed while the next one is written
# to DynamoDB. More only holds messages in memory that a restart would have to take again.
PREFETCH: Final = 2 * MAX_BATCH
ROUTING_KEYS: Final = (
    "telegram.connection.updated",
    "telegram.message.received",
    "telegram.message.edited",
    "telegram.messages.deleted",
)
QUEUES: Final = [f"{SERVICE}.{key}" for key in ROUTING_KEYS]


LiveBatcher = Annotated[Batcher, LoopContext("batcher")]
E = TypeVar("E", bound=Event)


def _queue(routing_key: str) -> RabbitQueue:
    return consumer_queue(SERVICE, routing_key)


def json_decoder(model: type[E]) -> Callable[[StreamMessage[Any]], Awaitable[E]]:
    """Validate the body straight from JSON into the event, once.

    FastStream's own decoder builds a dict first, which the handler's model then validates
    again; pydantic reads the bytes faster. A body that does not validate raises the same
    `ValidationError`, which the retry middleware parks at once.
    """

    async def decode(message: StreamMessage[Any]) -> E:
        return model.model_validate_json(message.body)

    return decode


def create_router() -> RabbitRouter:
    """A router per broker: FastStream binds subscribers to the broker that includes them."""
    router = RabbitRouter()
    channel = Channel(prefetch_count=PREFETCH)

    def subscribe(routing_key: str, model: type[LiveEvent]) -> RabbitSubscriber:
        return router.subscriber(
            _queue(routing_key),
            EVENTS,
            channel=channel,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=json_decoder(model),
        )

    @subscribe("telegram.connection.updated", ConnectionUpdated)
    async def on_connection_updated(event: ConnectionUpdated, batcher: LiveBatcher) -> None:
        await batcher.submit(event)

    @subscribe("telegram.message.received", MessageReceived)
    async def on_message_received(event: MessageReceived, batcher: LiveBatcher) -> None:
        await batcher.submit(event)

    @subscribe("telegram.message.edited", MessageEdited)
    async def on_message_edited(event: MessageEdited, batcher: LiveBatcher) -> None:
        await batcher.submit(event)

    @subscribe("telegram.messages.deleted", MessagesDeleted)
    async def on_messages_deleted(event: MessagesDeleted, batcher: LiveBatcher) -> None:
        await batcher.submit(event)

    return router
