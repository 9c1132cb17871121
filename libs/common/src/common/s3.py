"""S3 access (aioboto3) for avatars and media."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from common.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
else:
    S3Client = Any

# Path-style addressing works with every S3-compatible server (s3rver, MinIO) and with AWS.
_CLIENT_CONFIG = Config(
    s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 5}
)


@asynccontextmanager
async def s3_client(settings: Settings) -> AsyncIterator[S3Client]:
    session = aioboto3.Session()
    async with session.client(
        "s3",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url_s3,
        config=_CLIENT_CONFIG,
    ) as client:
        yield client


async def ensure_bucket(client: S3Client, bucket: str, region: str) -> None:
    """Create the bucket if it does not exist yet."""
    try:
        await client.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response["Error"]["Code"] not in {"404", "NoSuchBucket", "NotFound"}:
            raise
    arguments: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        await client.create_bucket(**arguments)
    except ClientError as error:
        if error.response["Error"]["Code"] not in {
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        }:
            raise


async def ping(client: S3Client, bucket: str) -> None:
    await client.head_bucket(Bucket=bucket)
