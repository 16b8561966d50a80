"""JSON logs: one object per line on stdout, with stable keys.

Every line has ``time`` (RFC 3339 UTC), ``level``, ``message``, ``logger`` and ``model``; every
``extra={...}`` field of a record becomes a top-level key (``request_id``, ``latency_ms``,
``p_value``, ...). Request bodies are never logged.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra`` (uvicorn's
# color_message duplicates message with terminal escapes).
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "color_message"}
)


def _rfc3339(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (no newlines inside)."""

    def __init__(self, model_name: str) -> None:
        super().__init__()
        self.model_name = model_name

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        doc: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "model": self.model_name,
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(
            doc, default=str, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        ).decode()


def configure_logging(level: str, model_name: str, stream: IO[str] | None = None) -> None:
    """Send every logger (ours, uvicorn's) to one JSON handler on stdout at ``level``."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(model_name))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The runtime writes its own request lines (see ACCESS_LOG); uvicorn's would double them.
    logging.getLogger("uvicorn.access").disabled = True
