"""A deal's messages from DynamoDB, newest first, in the contract's view (common.messages)."""

import asyncio
from typing import TYPE_CHECKING, Any

from common.dynamo import from_attributes
from common.ids import version_prefix
from common.messages import message_view

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client
else:
    DynamoDBClient = Any
    S3Client = Any

MESSAGE_PREFIX = "m#"
PRESIGN_SECONDS = 3600


async def _query(
    dynamo: DynamoDBClient,
    table: str,
    deal_id: str,
    prefix: str,
    *,
    newest_first: bool,
    after_key: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Items under `prefix`, following DynamoDB's 1 MB pages until `limit` are found."""
    arguments: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "deal_id = :deal AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":deal": {"S": deal_id}, ":prefix": {"S": prefix}},
        "ScanIndexForward": not newest_first,
    }
    if after_key is not None:
        arguments["ExclusiveStartKey"] = {"deal_id": {"S": deal_id}, "sk": {"S": after_key}}
    items: list[dict[str, Any]] = []
    while True:
        if limit is not None:
            arguments["Limit"] = limit - len(items)
        answer = await dynamo.query(**arguments)
        items.extend(from_attributes(item) for item in answer.get("Items", []))
        last = answer.get("LastEvaluatedKey")
        if not last or (limit is not None and len(items) >= limit):
            return items
        arguments["ExclusiveStartKey"] = last


async def message_page(
    dynamo: DynamoDBClient,
    table: str,
    deal_id: str,
    *,
    limit: int,
    older_than: str | None = None,
    newer_than: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` message items, newest first, and whether more lie beyond them.

    With `newer_than` the page is the `limit` messages just above that key (still returned
    newest first), and `more` says whether even newer ones exist.
    """
    upward = newer_than is not None
    items = await _query(
        dynamo,
        table,
        deal_id,
        MESSAGE_PREFIX,
        newest_first=not upward,
        after_key=newer_than if upward else older_than,
        limit=limit + 1,
    )
    more = len(items) > limit
    items = items[:limit]
    if upward:
        items.reverse()
    return items, more


async def _media_url(s3: S3Client, bucket: str, item: dict[str, Any]) -> str | None:
    key = item.get("media_key")
    if item.get("media_status") != "stored" or not key:
        return None
    return await s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
    )


async def render(
    dynamo: DynamoDBClient,
    s3: S3Client,
    *,
    table: str,
    bucket: str,
    items: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The contract's message view, with each edited message's versions and media URL."""

    async def one(item: dict[str, Any]) -> dict[str, Any]:
        versions: list[dict[str, Any]] = []
        if item.get("edit_ts"):
            versions = await _query(
                dynamo, table, str(item["deal_id"]), version_prefix(item["sk"]), newest_first=False
            )
        return message_view(item, versions=versions, media_url=await _media_url(s3, bucket, item))

    return list(await asyncio.gather(*(one(item) for item in items)))
