"""Move parked deliveries from `<queue>.dead` back to their queue, with a fresh retry budget."""

import aio_pika

from common.bus import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    QUEUE_HEADER,
    REQUEUED_HEADER,
    dead_queue_name,
)

_DROPPED_HEADERS = frozenset({ATTEMPT_HEADER, ERROR_HEADER, QUEUE_HEADER, "retry-tier", "x-death"})


async def requeue_dead(url: str, queues: list[str]) -> dict[str, int]:
    """Returns how many messages went back to each queue.

    Only the messages parked when it starts are moved, so one that fails again at once (and is
    parked again) cannot keep it looping.
    """
    moved: dict[str, int] = {}
    connection = await aio_pika.connect(url)
    async with connection:
        for name in queues:
            channel = await connection.channel(publisher_confirms=True)
            try:
                parked = await channel.declare_queue(dead_queue_name(name), passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                moved[name] = 0  # never parked anything
                continue
            waiting = parked.declaration_result.message_count or 0
            moved[name] = 0
            for _ in range(waiting):
                message = await parked.get(no_ack=False, fail=False)
                if message is None:
                    break
                headers = {
                    key: value
                    for key, value in (message.headers or {}).items()
                    if key not in _DROPPED_HEADERS
                }
                # Still a delivery that was tried before (`common.bus.tried_before`).
                headers[REQUEUED_HEADER] = True
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        headers=headers,
                        content_type=message.content_type,
                        message_id=message.message_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=name,
                )
                await message.ack()
                moved[name] += 1
    return moved
