"""DynamoDB access (aioboto3), the messages table and item (de)serialisation.

Table `DYNAMODB_MESSAGES_TABLE`: partition `deal_id` (S), sort `sk` (S). Message items sort
under `m#…` (newest first with ScanIndexForward=false), their edit versions under `v#…`.
Writes are idempotent puts or UpdateItem on the attributes a writer owns; no transactions,
so the local server (dynalite) and DynamoDB behave the same.
"""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

import aioboto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from common.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

Item: TypeAlias = dict[str, Any]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Adaptive retries back off on throttling; the caller still retries UnprocessedItems.
# A fixed User-Agent and no client-side parameter validation: botocore otherwise rebuilds the
# header from a dozen components twice per call and walks every request against its model,
# together a fifth of the CPU of a conditional UpdateItem; the server validates anyway.
_CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 8},
    max_pool_connections=50,
    user_agent="chat-sync",
    parameter_validation=False,
)


def to_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's wire format; attributes that are None are left out.

    The plain values Chat Sync stores are written directly: boto3's serializer turns every
    integer into a Decimal and tries each type in turn, on every attribute of every write.
    Anything else (bytes, sets) still goes through it.
    """
    return {key: _attribute(value) for key, value in item.items() if value is not None}


def _attribute(value: Any) -> dict[str, Any]:
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int:
        return {"N": str(value)}
    if kind is dict:
        return {"M": {key: _attribute(item) for key, item in value.items()}}
    if kind is list:
        return {"L": [_attribute(item) for item in value]}
    if value is None:
        return {"NULL": True}
    serialized: dict[str, Any] = _serializer.serialize(value)
    return serialized


def from_attributes(attributes: Mapping[str, Any]) -> Item:
    return {key: _plain(_deserializer.deserialize(value)) for key, value in attributes.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; Chat Sync stores only integers."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@asynccontextmanager
async def dynamodb_client(settings: Settings) -> AsyncIterator[DynamoDBClient]:
    session = aioboto3.Session()
    async with session.client(
        "dynamodb",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url_dynamodb,
        config=_CLIENT_CONFIG,
    ) as client:
        yield client


async def ensure_messages_table(client: DynamoDBClient, table: str) -> None:
    """Create the messages table if it does not exist, and wait until it is active."""
    try:
        await client.create_table(
            TableName=table,
            AttributeDefinitions=[
                {"AttributeName": "deal_id", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "deal_id", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
    waiter = client.get_waiter("table_exists")
    await waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


async def ping(client: DynamoDBClient, table: str) -> None:
    await client.describe_table(TableName=table)
