"""The DynamoDB side of the live path: message items, edit versions and tombstones.

Every write is an idempotent put or a conditional UpdateItem on the attributes this writer owns
(see `common.messages`), so a redelivery only repeats itself, an older edit never replaces a
newer one, a late message never clears a tombstone and the avatar worker's `media_*`
attributes are never touched.
"""

import asyncio
import json
import random
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from botocore.exceptions import ClientError

from common.dynamo import Item, from_attributes, to_attributes
from common.events import TelegramMessage
from common.ids import version_key
from common.messages import content_attributes

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


_KEY: Final = ("deal_id", "sk")
# Attributes whose absence is meaningful: a newer edit without them must remove them.
_REMOVABLE: Final = frozenset(
    {"text", "caption", "edit_date", "reply_to_message_id", "media", "sender"}
)
_BATCH_SIZE: Final = 25
_MAX_BATCH_ATTEMPTS: Final = 10
_CONCURRENCY: Final = 32
# A raw update bigger than this is not worth a version item approaching DynamoDB's 400 KB.
_MAX_RAW_UPDATE_BYTES: Final = 64_000

T = TypeVar("T")


def timestamp(moment: datetime) -> str:
    """Fixed-width RFC 3339, so stored times compare correctly as strings."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_item(
    *, deal_id: str, sort_key: str, message: TelegramMessage, raw_update: Mapping[str, Any]
) -> Item:
    content = content_attributes(message)
    raw = json.dumps(raw_update, ensure_ascii=False, separators=(",", ":"), default=str)
    return {
        "deal_id": deal_id,
        "sk": version_key(sort_key, int(content["edit_ts"])),
        "message_id": message.message_id,
        **content,
        "raw_update": raw if len(raw.encode()) <= _MAX_RAW_UPDATE_BYTES else None,
    }


async def write_message(client: "DynamoDBClient", table: str, item: Mapping[str, Any]) -> bool:
    """Store a message item unless a newer edit of it is stored already; True when written."""
    names: dict[str, str] = {"#edit_ts": "edit_ts"}
    values: dict[str, Any] = {":edit_ts": item.get("edit_ts", 0)}
    sets: list[str] = []
    removes: list[str] = []
    for index, (name, value) in enumerate(item.items()):
        if name in _KEY or (value is None and name not in _REMOVABLE):
            continue
        names[f"#a{index}"] = name
        if value is None:
            removes.append(f"#a{index}")
        else:
            values[f":a{index}"] = value
            sets.append(f"#a{index} = :a{index}")
    expression = "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    try:
        await client.update_item(
            TableName=table,
            Key=to_attributes({key: item[key] for key in _KEY}),
            UpdateExpression=expression,
            ConditionExpression="attribute_not_exists(#edit_ts) OR #edit_ts <= :edit_ts",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_attributes(values),
        )
    except ClientError as error:
        if _conditional_failure(error):
            return False
        raise
    return True


async def write_tombstone(
    client: "DynamoDBClient",
    table: str,
    *,
    identity: Mapping[str, Any],
    deleted_at: datetime,
) -> None:
    """Mark a message deleted, keeping its content; the earliest deletion time wins.

    `identity` holds the key and the identity attributes, so a delete that comes before its
    message leaves an item the message later fills in without clearing `deleted`.
    """
    names = {"#deleted": "deleted", "#deleted_at": "deleted_at"}
    values: dict[str, Any] = {":deleted": True, ":deleted_at": timestamp(deleted_at)}
    sets = ["#deleted = :deleted", "#deleted_at = :deleted_at"]
    for index, (name, value) in enumerate(identity.items()):
        if name not in _KEY:
            names[f"#i{index}"] = name
            values[f":i{index}"] = value
            sets.append(f"#i{index} = :i{index}")
    try:
        await client.update_item(
            TableName=table,
            Key=to_attributes({key: identity[key] for key in _KEY}),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_not_exists(#deleted_at) OR #deleted_at > :deleted_at",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_attributes(values),
        )
    except ClientError as error:
        if not _conditional_failure(error):
            raise


async def put_items(client: "DynamoDBClient", table: str, items: Iterable[Item]) -> None:
    """Idempotent puts through BatchWriteItem, retrying unprocessed items with backoff."""
    unique = {(item["deal_id"], item["sk"]): item for item in items}
    chunks = list(unique.values())
    await gather_limited(
        _put_chunk(client, table, chunks[start : start + _BATCH_SIZE])
        for start in range(0, len(chunks), _BATCH_SIZE)
    )


async def _put_chunk(client: "DynamoDBClient", table: str, items: list[Item]) -> None:
    requests: list[Any] = [{"PutRequest": {"Item": to_attributes(item)}} for item in items]
    for attempt in range(_MAX_BATCH_ATTEMPTS):
        response = await client.batch_write_item(RequestItems={table: requests})
        requests = list(response.get("UnprocessedItems", {}).get(table, []))
        if not requests:
            return
        await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311
    raise RuntimeError(f"DynamoDB left {len(requests)} items unprocessed after retries")


async def read_message(
    client: "DynamoDBClient", table: str, deal_id: str, sort_key: str
) -> Item | None:
    response = await client.get_item(
        TableName=table,
        Key=to_attributes({"deal_id": deal_id, "sk": sort_key}),
        ConsistentRead=True,
    )
    stored = response.get("Item")
    return from_attributes(stored) if stored else None


async def gather_limited(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Run the writes of a batch side by side, a bounded number at a time."""
    semaphore = asyncio.Semaphore(_CONCURRENCY)

    async def limited(awaitable: Awaitable[T]) -> T:
        async with semaphore:
            return await awaitable

    return list(await asyncio.gather(*(limited(awaitable) for awaitable in awaitables)))


def _conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
