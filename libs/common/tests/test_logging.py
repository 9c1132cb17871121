import json
import logging

import pytest
import structlog

from common.logging import configure_logging, redact_text


def test_bot_tokens_jwts_and_query_tokens_are_masked() -> None:
    line = (
        "POST /bot7000000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe "
        "GET /ws/chats/1/?token=abc.def&since=3 "
        "auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"
    )

    masked = redact_text(line)

    assert "AAHdqTcv" not in masked
    assert "abc.def" not in masked
    assert "eyJzdWIi" not in masked
    assert "since=3" in masked


def test_log_lines_are_json_without_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test-service")

    structlog.get_logger("t").info(
        "calling", token="plain-token", url="/bot123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/x"
    )
    logging.getLogger("std").warning("password=%s", "hunter2-not-masked-by-key")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]

    assert lines[0]["service"] == "test-service"
    assert lines[0]["token"] == "***"
    assert "ABCDEFGHIJ" not in lines[0]["url"]
    assert lines[1]["level"] == "warning"
    assert "hunter2" not in lines[1]["event"]
