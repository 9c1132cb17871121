"""Prepare the local stores for `make run`: database, migrations, table, bucket, topology and
the RabbitMQ queue policy.

Idempotent; reads the same settings (and .env) as the services.
"""

import asyncio
import subprocess
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from alembic import command

from common import broker_policy, bus
from common.dynamo import dynamodb_client, ensure_messages_table
from common.migrate import alembic_config
from common.s3 import ensure_bucket, s3_client
from common.settings import Settings, get_settings


async def ensure_database(settings: Settings) -> None:
    url = settings.sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    connection = await asyncpg.connect(admin_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")
    finally:
        await connection.close()


async def ensure_aws(settings: Settings) -> None:
    async with dynamodb_client(settings) as dynamodb:
        await ensure_messages_table(dynamodb, settings.dynamodb_messages_table)
    async with s3_client(settings) as s3:
        await ensure_bucket(s3, settings.s3_bucket, settings.aws_region)


async def ensure_exchanges(settings: Settings) -> None:
    broker = bus.make_broker(settings.rabbitmq_url.get_secret_value(), publish_timeout=5)
    await broker.connect()
    try:
        await bus.declare_topology(broker, [])
    finally:
        await broker.stop()


def main() -> None:
    settings = get_settings()
    asyncio.run(ensure_database(settings))
    command.upgrade(alembic_config(settings.sqlalchemy_url), "head")
    asyncio.run(ensure_aws(settings))
    asyncio.run(ensure_exchanges(settings))
    try:
        broker_policy.apply_on_this_machine(settings.rabbitmq_url.get_secret_value())
    except (httpx.HTTPError, OSError, subprocess.CalledProcessError) as error:
        print(f"RabbitMQ queue policy not set: {type(error).__name__}")
    print("database migrated; table, bucket and exchanges ready")


if __name__ == "__main__":
    main()
