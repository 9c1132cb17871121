import json

import pytest
from ingest_fakes import SECRET, FakeBotAPI, StartApp

from common.settings import Settings, get_settings
from telegram_ingest import __main__ as cli

BUSINESS_UPDATES = [
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
]


async def test_start_sets_the_webhook_with_secret_and_explicit_updates(
    app_settings: Settings, bot_api: FakeBotAPI, start_app: StartApp
) -> None:
    settings = app_settings.model_copy(
        update={
            "telegram_webhook_url": "https://example.test/telegram/webhook/",
            "telegram_webhook_max_connections": 7,
        }
    )

    async with start_app(settings) as client:
        ready = await client.get("/readyz")

    assert ready.status_code == 200
    [call] = bot_api.called("setWebhook")
    assert call["url"] == "https://example.test/telegram/webhook/"
    assert call["secret_token"] == SECRET
    assert json.loads(call["allowed_updates"]) == BUSINESS_UPDATES
    assert call["max_connections"] == "7"


async def test_start_without_webhook_url_leaves_the_webhook_alone(
    bot_api: FakeBotAPI, client: object
) -> None:
    assert bot_api.called("setWebhook") == []


async def test_webhook_info_prints_url_pending_error_and_updates(
    app_settings: Settings, bot_api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    await cli.run_admin(app_settings, "webhook-info")

    printed = json.loads(capsys.readouterr().out)
    assert printed["url"] == "https://example.test/telegram/webhook/"
    assert printed["pending_update_count"] == 3
    assert printed["last_error_message"] == "Connection refused"
    assert printed["allowed_updates"] == ["business_message"]


async def test_delete_webhook_keeps_pending_updates(
    app_settings: Settings, bot_api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    await cli.run_admin(app_settings, "delete-webhook")

    assert bot_api.called("deleteWebhook") == [{"drop_pending_updates": "false"}]
    assert "pending_update_count" in capsys.readouterr().out


async def test_set_webhook_command_sends_the_explicit_updates(
    app_settings: Settings, bot_api: FakeBotAPI
) -> None:
    settings = app_settings.model_copy(update={"telegram_webhook_url": "https://example.test/w/"})

    await cli.run_admin(settings, "set-webhook")

    [call] = bot_api.called("setWebhook")
    assert json.loads(call["allowed_updates"]) == BUSINESS_UPDATES
    assert call["max_connections"] == "40"


@pytest.mark.parametrize("command", ["serve", "poll", "set-webhook"])
def test_production_start_refuses_missing_secrets(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEBUG", "false")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "")
    monkeypatch.setattr(cli, "configure_logging", lambda *_args: None)
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as refused:
            cli.main([command])
    finally:
        get_settings.cache_clear()

    assert refused.value.code == 2
