"""`requeue-dead` against the real broker: what a requeued delivery carries."""

import uuid

import aio_pika

from common import bus
from common.settings import Settings
from sync_worker.requeue import requeue_dead


async def test_a_requeued_delivery_starts_a_fresh_retry_budget_and_is_known_as_tried(
    settings: Settings,
) -> None:
    url = settings.rabbitmq_url.get_secret_value()
    name = f"test-requeue-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, auto_delete=True)
        dead = await channel.declare_queue(bus.dead_queue_name(name), auto_delete=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                b"{}",
                headers={bus.ATTEMPT_HEADER: 4, bus.ERROR_HEADER: "RuntimeError: was down"},
            ),
            routing_key=dead.name,
        )

        moved = await requeue_dead(url, [name])
        requeued = await queue.get(timeout=5)

    headers = dict(requeued.headers)
    assert moved == {name: 1}
    assert bus.ATTEMPT_HEADER not in headers
    assert bus.ERROR_HEADER not in headers
    assert bus.tried_before(headers, redelivered=False)
