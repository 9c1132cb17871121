"""The console script: `gateway token`, and a production start without secrets refused."""

from collections.abc import Iterator

import pytest

from common.auth import verify_token
from common.settings import InsecureSettingsError, get_settings
from gateway.__main__ import main

SECRET = "cli-test-secret-" + "q" * 32


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.chdir("/")  # no .env from the working tree
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_token_command_prints_a_verifiable_admin_token(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.setenv("AUTH_JWT_SECRET", SECRET)

    main(["token", "123456", "--admin"])

    principal = verify_token(capsys.readouterr().out.strip(), SECRET, max_hours=24)
    assert principal.user_id == "123456"
    assert principal.is_admin


def test_token_command_refuses_a_non_decimal_user_id(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("AUTH_JWT_SECRET", SECRET)

    with pytest.raises(SystemExit, match="decimal"):
        main(["token", "boris"])


@pytest.mark.parametrize("missing", ["AUTH_JWT_SECRET", "ADMIN_PASSWORD", "ADMIN_SESSION_SECRET"])
def test_production_start_refuses_a_missing_secret_and_names_it(
    environment: pytest.MonkeyPatch, missing: str
) -> None:
    environment.setenv("DEBUG", "false")
    for name in ("AUTH_JWT_SECRET", "ADMIN_PASSWORD", "ADMIN_SESSION_SECRET"):
        environment.setenv(name, "a-real-secret-" + "w" * 24)
    environment.setenv(missing, "changeme")

    with pytest.raises(InsecureSettingsError, match=missing):
        main([])
