"""The queue policy reaches the queues of the vhost it is applied to."""

import shutil
import subprocess
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest

from common import broker_policy


def _policy_of(ctl: str, amqp_url: str, queue: str) -> str:
    vhost = unquote(urlsplit(amqp_url).path[1:])
    listed = subprocess.run(
        [ctl, "-q", "list_queues", "-p", vhost, "name", "policy"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return listed[listed.index(queue) + 1]


async def test_queues_of_the_vhost_run_under_the_policy(private_vhost: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("reading a queue's effective policy needs rabbitmqctl")
    broker_policy.apply_on_this_machine(private_vhost)
    connection = await aio_pika.connect(private_vhost)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("policy-probe", durable=True)

    assert _policy_of(ctl, private_vhost, "policy-probe") == broker_policy.NAME
