"""`external-api-dev`: serve generated chats on EXTERNAL_API_DEV_PORT [8090].

Size and faults come from EXTERNAL_DEV_CHATS [50], EXTERNAL_DEV_MAX_MESSAGES [30],
EXTERNAL_DEV_SEED [7], EXTERNAL_DEV_LATENCY_MS [0], EXTERNAL_DEV_FAILURE_RATE [0],
EXTERNAL_DEV_RATE_LIMIT_RATE [0]. It checks EXTERNAL_API_TOKEN when one is set.
"""

import os

import uvicorn

from common.settings import get_settings
from sync_worker.devserver.app import Faults, build_app
from sync_worker.devserver.data import generate


def main() -> None:
    settings = get_settings()
    base_url = f"http://127.0.0.1:{settings.external_api_dev_port}"
    dataset = generate(
        seed=int(os.environ.get("EXTERNAL_DEV_SEED", "7")),
        chats=int(os.environ.get("EXTERNAL_DEV_CHATS", "50")),
        max_messages=int(os.environ.get("EXTERNAL_DEV_MAX_MESSAGES", "30")),
        avatar_base_url=base_url,
    )
    faults = Faults(
        latency_ms=int(os.environ.get("EXTERNAL_DEV_LATENCY_MS", "0")),
        failure_rate=float(os.environ.get("EXTERNAL_DEV_FAILURE_RATE", "0")),
        rate_limit_rate=float(os.environ.get("EXTERNAL_DEV_RATE_LIMIT_RATE", "0")),
    )
    token = settings.external_api_token.get_secret_value() or None
    app = build_app(dataset, token=token, faults=faults)
    uvicorn.run(
        app, host=settings.bind_host, port=settings.external_api_dev_port, log_level="warning"
    )


if __name__ == "__main__":
    main()
