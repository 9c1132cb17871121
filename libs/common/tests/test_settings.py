import pytest
from pydantic import ValidationError

from common.settings import InsecureSettingsError, Settings


def test_old_variable_names_build_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "db")
    monkeypatch.setenv("POSTGRES_DB", "deals")
    monkeypatch.delenv("DATABASE_URL", raising=False)

    settings = Settings(_env_file=None)

    assert settings.sqlalchemy_url == "postgresql+asyncpg://postgres:postgres@db:5432/deals"


def test_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "ignored")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@h:1/d")

    settings = Settings(_env_file=None)

    assert settings.sqlalchemy_url == "postgresql+asyncpg://u:p@h:1/d"


def test_region_falls_back_to_aws_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    assert Settings(_env_file=None).aws_region == "eu-west-1"


@pytest.mark.parametrize("secret", ["has space", "x" * 257, "semi;colon"])
def test_malformed_webhook_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="TELEGRAM_WEBHOOK_SECRET"):
        Settings(_env_file=None, telegram_webhook_secret=secret)


def test_production_refuses_missing_and_well_known_secrets() -> None:
    settings = Settings(
        _env_file=None, debug=False, auth_jwt_secret="changeme", telegram_bot_token=""
    )

    with pytest.raises(InsecureSettingsError) as raised:
        settings.require_secrets("auth_jwt_secret", "telegram_bot_token")

    assert "AUTH_JWT_SECRET" in str(raised.value)
    assert "TELEGRAM_BOT_TOKEN" in str(raised.value)
    assert "changeme" not in str(raised.value)


def test_debug_allows_development_secrets() -> None:
    settings = Settings(_env_file=None, debug=True)

    settings.require_secrets("auth_jwt_secret")


def test_allowlist_is_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVATAR_URL_ALLOWLIST", "127.0.0.1:8090, localhost:9000")

    settings = Settings(_env_file=None)

    assert settings.avatar_url_allowlist == ["127.0.0.1:8090", "localhost:9000"]


def test_secrets_do_not_appear_in_repr() -> None:
    settings = Settings(_env_file=None, auth_jwt_secret="s3cr3t-value")

    assert "s3cr3t-value" not in repr(settings)
