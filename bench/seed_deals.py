"""Seed the deals list with COPY: `uv run python -m bench.seed_deals --count 1100000
[--database-url postgresql://postgres@127.0.0.1:5432/chat_sync_bench]`.

All deals belong to one owner (`OWNER`), are fully synced and have a preview; activity times
step back one second per two deals, so the keyset's tie-break on `id` is exercised. Customers
are shared (at most 100,000 rows), as a join target of realistic size. Reseeding truncates the
deal, customer and message_key tables of the benchmark database; seeding the same count again
is skipped.
"""

import argparse
import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from common.ids import customer_id_for_telegram, deal_id_for_telegram

OWNER = 750_000_001
CONNECTION = "BenchSeedConn-business-connection"
FIRST_CHAT = 900_000_000
FIRST_CUSTOMER = 800_000_000
NEWEST = datetime(2026, 11, 1, tzinfo=UTC)
CHUNK = 50_000
DEAL_COLUMNS = (
    "id", "source", "external_id", "business_connection_id", "chat_id", "owner_user_id",
    "customer_id", "last_message_id", "last_message_key", "last_message_at", "last_message",
    "total_messages", "unread_count", "synced_at", "sync_status", "version",
)  # fmt: skip
CUSTOMER_COLUMNS = ("id", "source", "external_id", "name", "first_name", "last_name", "username")


def customers(count: int) -> int:
    return min(count, 100_000)


def _customer_rows(count: int) -> Iterator[tuple[Any, ...]]:
    for index in range(count):
        user = FIRST_CUSTOMER + index
        name = f"Customer {index}"
        yield (customer_id_for_telegram(user), "telegram", str(user), name, "Customer",
               str(index), f"customer_{index}")  # fmt: skip


def _deal_rows(start: int, stop: int, customer_count: int) -> Iterator[tuple[Any, ...]]:
    synced = NEWEST
    for index in range(start, stop):
        chat = FIRST_CHAT + index
        at = NEWEST - timedelta(seconds=index // 2)
        preview = json.dumps(
            {"text": f"Hello, is order #{index} ready?", "direction": "incoming",
             "date": at.isoformat().replace("+00:00", "Z")}
        )  # fmt: skip
        message_id = 1 + index % 5000
        yield (
            deal_id_for_telegram(CONNECTION, chat), "telegram", f"tg:{CONNECTION}:{chat}",
            CONNECTION, chat, OWNER,
            customer_id_for_telegram(FIRST_CUSTOMER + index % customer_count),
            str(message_id), f"m#{message_id:012d}", at, preview,
            1 + index % 40, index % 3, synced, "synced", 1,
        )  # fmt: skip


async def seeded_count(database: Any) -> int:
    return int(await database.fetchval("SELECT count(*) FROM deal WHERE owner_user_id = $1", OWNER))


async def seed(database_url: str, count: int, *, log: bool = True) -> bool:
    """Seed `count` deals unless exactly that many are there; True when it seeded."""
    database = await asyncpg.connect(database_url)
    try:
        if await seeded_count(database) == count:
            return False
        await database.execute("TRUNCATE deal, customer, message_key CASCADE")
        customer_count = customers(count)
        await database.copy_records_to_table(
            "customer", records=_customer_rows(customer_count), columns=CUSTOMER_COLUMNS
        )
        for start in range(0, count, CHUNK):
            await database.copy_records_to_table(
                "deal",
                records=_deal_rows(start, min(count, start + CHUNK), customer_count),
                columns=DEAL_COLUMNS,
            )
            if log:
                print(f"seeded {min(count, start + CHUNK):,} deals", flush=True)
        await database.execute("ANALYZE deal")
        await database.execute("ANALYZE customer")
    finally:
        await database.close()
    return True


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_deals", description=__doc__)
    parser.add_argument("--count", type=int, default=1_100_000)
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/chat_sync_bench"
    )
    arguments = parser.parse_args()
    asyncio.run(seed(arguments.database_url, arguments.count))


if __name__ == "__main__":
    main()
