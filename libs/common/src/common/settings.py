"""Every environment variable Chat Sync reads, in one place.

The names of the old Django app's variables are kept. A service calls `get_settings()` once at
start-up and then `require_secrets(...)` with the secrets it actually uses, so a production
process refuses to start on a missing or well-known secret and names it.
"""

import re
from functools import lru_cache
from typing import Annotated, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that show up in tutorials, compose files and our own examples. A production secret
# equal to one of them is as good as none.
WELL_KNOWN_SECRETS = frozenset(
    {
        "",
        "admin",
        "changeme",
        "change-me",
        "guest",
        "password",
        "postgres",
        "secret",
        "dev",
        "development",
        "test",
    }
)
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class InsecureSettingsError(RuntimeError):
    """A production process was started without a real secret."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    debug: bool = False
    log_level: str = "INFO"
    bind_host: str = "127.0.0.1"

    # PostgreSQL: DATABASE_URL wins over the POSTGRES_* parts.
    database_url: str | None = None
    postgres_host: str = "localhost"
    postgres_port: int = 5432
    postgres_db: str = "chat_sync"
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("postgres")
    database_pool_size: int = 10

    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    publish_confirm_timeout: float = Field(default=5.0, gt=0)

    # AWS: botocore's own variable names, passed explicitly to every client.
    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    aws_endpoint_url_dynamodb: str | None = None
    aws_endpoint_url_s3: str | None = None
    dynamodb_messages_table: str = "chat_sync_messages"
    s3_bucket: str = "chat-sync-media"

    telegram_bot_token: SecretStr = SecretStr("")
    telegram_webhook_secret: SecretStr = SecretStr("")
    telegram_webhook_url: str | None = None
    telegram_webhook_max_connections: int = Field(default=40, ge=1, le=100)
    telegram_api_url: str = "https://api.telegram.org"
    telegram_chat_rate_per_second: float = Field(default=1.0, gt=0)
    telegram_bot_rate_per_second: float = Field(default=30.0, gt=0)

    external_api_url: str = "http://127.0.0.1:8090"
    external_api_token: SecretStr = SecretStr("")
    external_api_timeout: float = Field(default=30.0, gt=0)
    external_api_attempts: int = Field(default=6, ge=1)
    external_api_backoff: float = Field(default=0.5, ge=0)
    external_api_concurrency: int = Field(default=8, ge=1)
    sync_lease_seconds: float = Field(default=30.0, gt=0)
    sync_scan_seconds: float = Field(default=10.0, gt=0)
    sync_pending_grace_seconds: float = Field(default=15.0, ge=0)
    sync_page_size: int = Field(default=20, ge=1, le=100)
    sync_message_page_size: int = Field(default=100, ge=1, le=100)

    auth_jwt_secret: SecretStr = SecretStr("")
    auth_max_token_hours: int = Field(default=24, ge=1)

    admin_username: str = "admin"
    admin_password: SecretStr = SecretStr("")
    admin_session_secret: SecretStr = SecretStr("")

    gateway_port: int = 8000
    telegram_ingest_port: int = 8001
    realtime_port: int = 8002
    sync_worker_port: int = 8003
    avatar_worker_port: int = 8004
    external_api_dev_port: int = 8090

    realtime_retention_hours: int = Field(default=24, ge=1)
    realtime_retention_events: int = Field(default=10_000, ge=1)
    avatar_refresh_hours: int = Field(default=24, ge=1)
    avatar_url_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("avatar_url_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    @model_validator(mode="after")
    def _check_webhook_secret(self) -> Self:
        secret = self.telegram_webhook_secret.get_secret_value()
        if secret and not _WEBHOOK_SECRET.fullmatch(secret):
            raise ValueError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Za-z0-9_-")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The asyncpg URL SQLAlchemy connects with."""
        if self.database_url:
            url = self.database_url
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    return "postgresql+asyncpg://" + url.removeprefix(prefix)
            return url
        password = self.postgres_password.get_secret_value()
        return (
            f"postgresql+asyncpg://{self.postgres_user}:{password}"
            f"@{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"
        )

    def require_secrets(self, *names: str) -> None:
        """Refuse to run in production with a missing or well-known secret."""
        if self.debug:
            return
        bad = [
            name.upper()
            for name in names
            if _secret_value(getattr(self, name)).strip().lower() in WELL_KNOWN_SECRETS
        ]
        if bad:
            raise InsecureSettingsError(
                "refusing to start with DEBUG=false: set a real value for " + ", ".join(bad)
            )


def _secret_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value is None else str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
