"""Structured logs: one JSON object per line with `severity` and `message`.

Cloud Logging parses these lines; the execution id of the current request is
attached through a context variable instead of being passed around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

execution_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "execution_id", default=None
)

_LOGGER = logging.getLogger("calsync")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        current = execution_id.get()
        if current:
            entry["execution_id"] = current
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(json_lines: bool = True, level: int = logging.INFO) -> None:
    """Install the handler once; safe to call from every entry point."""
    if getattr(configure, "_done", False):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(fields)s", defaults={"fields": ""}
    ))
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(level)
    _LOGGER.propagate = False
    configure._done = True  # type: ignore[attr-defined]


def log(severity: str, message: str, **fields: Any) -> None:
    """Log one line; `fields` become top-level JSON keys. Never pass secrets."""
    _LOGGER.log(getattr(logging, severity.upper(), logging.INFO), message,
                extra={"fields": fields})
