"""Structured JSON logs in which secrets and tokens never appear.

Redaction happens in one processor, on keys and on values: whatever a caller passes, a bot
token, a JWT or a `token=` query parameter is masked before the line is written.
"""

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"token|secret|password|authorization|cookie|api_key", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b"  # Telegram bot token
    r"|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # JWT
    r"|(?<=[?&]token=)[^&\s\"']+"  # token in a query string
    r"|(?<=/bot)\d{5,}:[^/\s\"']+"  # token inside a Bot API path
)
_SECRET_ASSIGNMENT = re.compile(r"((?:token|secret|password|api_key)=)[^&\s\"']+", re.IGNORECASE)
MASK = "***"


def redact_text(text: str) -> str:
    return _SECRET_ASSIGNMENT.sub(r"\1" + MASK, _SECRET_VALUE.sub(MASK, text))


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and _SECRET_KEY.search(key) else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stdout for structlog and the standard library alike."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            lambda _l, _m, event: {"service": service, **event},
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Every request's query string may carry a token; the redactor masks it, and access
    # logs of probes are noise.
    logging.getLogger("uvicorn.access").addFilter(_drop_probe_lines)


def _drop_probe_lines(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(path in message for path in ("/healthz", "/readyz", "/metrics"))
