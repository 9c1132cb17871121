import uuid

from boto3.dynamodb.types import TypeSerializer

from common.dynamo import (
    dynamodb_client,
    ensure_messages_table,
    from_attributes,
    ping,
    to_attributes,
)
from common.s3 import ensure_bucket, s3_client
from common.settings import Settings


async def test_messages_table_is_created_once_and_answers(settings: Settings) -> None:
    async with dynamodb_client(settings) as client:
        await ensure_messages_table(client, settings.dynamodb_messages_table)
        await ensure_messages_table(client, settings.dynamodb_messages_table)

        item = {"deal_id": "d1", "sk": "m#000000000001", "text": "hi", "size": 3, "tags": ["a"]}
        await client.put_item(TableName=settings.dynamodb_messages_table, Item=to_attributes(item))
        stored = await client.get_item(
            TableName=settings.dynamodb_messages_table,
            Key=to_attributes({"deal_id": "d1", "sk": "m#000000000001"}),
        )
        await ping(client, settings.dynamodb_messages_table)

    assert from_attributes(stored["Item"]) == item


async def test_bucket_is_created_once_and_keeps_objects(settings: Settings) -> None:
    key = f"avatars/{uuid.uuid4()}.jpg"

    async with s3_client(settings) as client:
        await ensure_bucket(client, settings.s3_bucket, settings.aws_region)
        await ensure_bucket(client, settings.s3_bucket, settings.aws_region)
        await client.put_object(
            Bucket=settings.s3_bucket, Key=key, Body=b"\xff\xd8jpeg", ContentType="image/jpeg"
        )
        stored = await client.get_object(Bucket=settings.s3_bucket, Key=key)
        body = await stored["Body"].read()

    assert body == b"\xff\xd8jpeg"
    assert stored["ContentType"] == "image/jpeg"


def test_attributes_are_what_boto3_writes_for_the_values_chat_sync_stores() -> None:
    item = {
        "deal_id": "d1",
        "n": 12,
        "big": 2**62,
        "neg": -3,
        "flag": False,
        "gone": None,
        "media": {"kind": "photo", "size": 10, "missing": None, "tags": ["a", 1, True, None]},
        "entities": [{"type": "bold", "offset": 0}],
        "blob": b"\x00\x01",
    }
    serialize = TypeSerializer().serialize
    expected = {key: serialize(value) for key, value in item.items() if value is not None}

    assert to_attributes(item) == expected
    plain = {key: value for key, value in item.items() if key != "blob" and value is not None}
    assert from_attributes(to_attributes(plain)) == plain
