"""The RabbitMQ policy Chat Sync's queues should run under: classic queues, version 2.

Every event is persistent and confirmed, so the webhook's latency is RabbitMQ's confirm time.
Version 2 of the classic queue store confirms faster under load than version 1 (RabbitMQ 3.10
and 3.11 default to version 1): persistent 1.4 KB events into three durable queues at 1,150/s,
open loop, on this project's development machine: p99 7.4-8.2 ms against 10.5-12.8 ms.

A policy, not a queue argument: RabbitMQ refuses to redeclare an existing queue with a
different `x-queue-version`, while a policy converts existing queues in place. Applied by
`deploy/local/prepare.py` (`make run`), by the benchmarks on their vhost, and by the compose
file; other deployments apply the same definition (see `deploy/k8s/README.md`).
"""

import json
import shutil
import subprocess
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import httpx

NAME: Final = "chat-sync-queues"
DEFINITION: Final[dict[str, Any]] = {
    "pattern": ".*",
    "apply-to": "queues",
    "priority": 0,
    "definition": {"queue-version": 2},
}


def apply(amqp_url: str, *, management_port: int = 15672, timeout: float = 5.0) -> None:
    """Set the policy on the vhost of `amqp_url` through the management API (same user)."""
    parts = urlsplit(amqp_url)
    url = (
        f"http://{parts.hostname}:{management_port}/api/policies/"
        f"{quote(_vhost(amqp_url), safe='')}/{NAME}"
    )
    auth = (parts.username or "guest", parts.password or "guest")
    with httpx.Client(auth=auth, timeout=timeout) as client:
        client.put(url, json=DEFINITION).raise_for_status()


def apply_on_this_machine(amqp_url: str) -> None:
    """`apply`, or `rabbitmqctl set_policy` where the management plugin is not running."""
    try:
        apply(amqp_url)
        return
    except httpx.HTTPError:
        ctl = shutil.which("rabbitmqctl")
        if ctl is None:
            raise
    subprocess.run(  # noqa: S603 - a fixed command line
        [
            ctl, "-q", "set_policy", "-p", _vhost(amqp_url),
            "--apply-to", str(DEFINITION["apply-to"]),
            "--priority", str(DEFINITION["priority"]),
            NAME, str(DEFINITION["pattern"]), json.dumps(DEFINITION["definition"]),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def _vhost(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path[1:]) or "/"
