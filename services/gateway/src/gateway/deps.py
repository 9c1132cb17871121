"""What a route depends on, as `Annotated` aliases: resources from the lifespan, the caller."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.rabbit import RabbitBroker
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.auth import InvalidTokenError, Principal
from common.settings import Settings
from gateway.problems import ProblemError
from gateway.tokens import TokenVerifier

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client
else:
    DynamoDBClient = Any
    S3Client = Any


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    dynamo: DynamoDBClient
    s3: S3Client
    broker: RabbitBroker
    tokens: TokenVerifier
    reads: asyncpg.Pool  # the deals list's own (`deals.listing.open_pool`)


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with resources.sessions() as session:
        yield session


async def get_dynamo(resources: ResourcesDep) -> DynamoDBClient:
    return resources.dynamo


async def get_s3(resources: ResourcesDep) -> S3Client:
    return resources.s3


async def get_bus(resources: ResourcesDep) -> RabbitBroker:
    return resources.broker


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
Dynamo = Annotated[DynamoDBClient, Depends(get_dynamo)]
S3 = Annotated[S3Client, Depends(get_s3)]
Bus = Annotated[RabbitBroker, Depends(get_bus)]

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="HS256 JWT: `sub` = Telegram user id, optional `role: admin`, `exp` required.",
)


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="chat-sync"'})


async def get_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    resources: ResourcesDep,
) -> Principal:
    if credentials is None:
        raise _unauthorized("a Bearer token is required")
    try:
        return resources.tokens.verify(credentials.credentials)
    except InvalidTokenError:
        raise _unauthorized("the token is invalid, expired or lives too long") from None


CurrentUser = Annotated[Principal, Depends(get_principal)]


async def get_admin(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise ProblemError(403, "only an admin may do this")
    return user


AdminUser = Annotated[Principal, Depends(get_admin)]
