"""The avatar worker's subscribers: profile photos and media off the message path.

Each event may need two independent copies (the customer's photo, the message's media); both
are tried, and a failure of either sends the delivery through the retry tiers. Both are
idempotent, so a repeat only redoes what is still due.
"""

from collections.abc import Awaitable
from typing import Annotated, Final

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitRouter
from faststream.rabbit.message import RabbitMessage

from common.bus import EVENTS, consumer_queue, tried_before
from common.events import ConnectionUpdated, CustomerImported, MessageReceived
from sync_worker.avatars.customers import refresh_external, refresh_telegram
from sync_worker.avatars.media import copy_media
from sync_worker.avatars.resources import Avatars
from sync_worker.consumers import json_decoder
from sync_worker.context import LoopContext

SERVICE: Final = "avatar-worker"
# Downloads are slow; a bounded prefetch leaves the rest to other avatar-worker processes.
_channel = Channel(prefetch_count=20)

_message_received = consumer_queue(SERVICE, "telegram.message.received")
_connection_updated = consumer_queue(SERVICE, "telegram.connection.updated")
_customer_imported = consumer_queue(SERVICE, "customer.imported")
QUEUES: Final = [
    queue.name for queue in (_message_received, _connection_updated, _customer_imported)
]

AvatarsDep = Annotated[Avatars, LoopContext("avatars")]
# Not `faststream.rabbit.annotations.RabbitMessage`: its `Context` costs a thread hop.
MessageDep = Annotated[RabbitMessage, LoopContext("message")]

router = RabbitRouter()


@router.subscriber(
    _message_received,
    EVENTS,
    channel=_channel,
    ack_policy=AckPolicy.NACK_ON_ERROR,
    decoder=json_decoder(MessageReceived),
)
async def on_message_received(
    event: MessageReceived, avatars: AvatarsDep, message: MessageDep
) -> None:
    jobs: list[Awaitable[None]] = [copy_media(avatars, event)]
    if event.message.chat.type == "private":
        # In a private chat the chat id is the customer's user id.
        owners = [event.owner_user_id]
        jobs.append(refresh_telegram(avatars, event.chat_id, owners, retry=_retry(message)))
    await _all(jobs)


@router.subscriber(
    _connection_updated, EVENTS, channel=_channel, ack_policy=AckPolicy.NACK_ON_ERROR
)
async def on_connection_updated(
    event: ConnectionUpdated, avatars: AvatarsDep, message: MessageDep
) -> None:
    owners = [event.owner_user_id]
    await refresh_telegram(avatars, event.connection.user.id, owners, retry=_retry(message))


@router.subscriber(_customer_imported, EVENTS, channel=_channel, ack_policy=AckPolicy.NACK_ON_ERROR)
async def on_customer_imported(
    event: CustomerImported, avatars: AvatarsDep, message: MessageDep
) -> None:
    await refresh_external(avatars, event, retry=_retry(message))


def _retry(message: RabbitMessage) -> bool:
    return tried_before(message.headers, redelivered=bool(message.raw_message.redelivered))


async def _all(jobs: list[Awaitable[None]]) -> None:
    failure: Exception | None = None
    for job in jobs:
        try:
            await job
        except Exception as error:
            failure = failure or error
    if failure is not None:
        raise failure
