"""Structured logs: one JSON object per line on stdout, as Cloud Logging reads them.

Every line has `severity`, `message` and `time`; a line logged while a request
is served also carries that request's trace (`logging.googleapis.com/trace`,
from `X-Cloud-Trace-Context` or `traceparent`) and execution id. The request
context lives in context variables set by `request_context` (entry points wrap
their handlers in it), so nothing has to pass it around. Fields a caller
passes become top-level keys, but can never replace the keys above: a
colliding field is renamed `field_<name>`.

`CALSYNC_JSON_LOGS=false` switches to plain text lines (local reading); it is
read when logging is configured, which happens at the first line at the latest.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
LABELS_KEY = "logging.googleapis.com/labels"
RESERVED = frozenset({"severity", "message", "time", "logger", "execution_id", "exception"})
_GOOGLE_PREFIX = "logging.googleapis.com/"

_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_EXECUTION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

_LOGGER = logging.getLogger("calsync")


@dataclass(frozen=True)
class RequestContext:
    """What every line logged while serving one request carries."""

    execution_id: str
    trace_id: str | None = None
    span_id: str | None = None
    sampled: bool | None = None


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "calsync_request", default=None)


def current() -> RequestContext | None:
    """The context of the request being served, if any."""
    return _current.get()


def parse_trace(headers: Any) -> tuple[str | None, str | None, bool | None]:
    """(trace id, span id as 16 hex digits, sampled) from the request's headers.

    `X-Cloud-Trace-Context: TRACE/SPAN;o=1` (span in decimal) wins over the W3C
    `traceparent: 00-TRACE-SPAN-FLAGS`; malformed values are ignored.
    """
    cloud = headers.get("X-Cloud-Trace-Context")
    if isinstance(cloud, str):
        match = _CLOUD_TRACE.match(cloud.strip())
        if match and int(match.group(1), 16):
            span = None
            if match.group(2) and 0 < int(match.group(2)) < 2**64:
                span = f"{int(match.group(2)):016x}"
            sampled = None if match.group(3) is None else match.group(3) == "1"
            return match.group(1).lower(), span, sampled
    parent = headers.get("traceparent")
    if isinstance(parent, str):
        match = _TRACEPARENT.match(parent.strip().lower())
        if match and int(match.group(1), 16) and int(match.group(2), 16):
            return match.group(1), match.group(2), bool(int(match.group(3), 16) & 1)
    return None, None, None


def context_from_headers(headers: Any) -> RequestContext:
    """The request context: its trace, and `Function-Execution-Id` (or a fresh id)."""
    trace_id, span_id, sampled = parse_trace(headers)
    given = headers.get("Function-Execution-Id")
    execution = given.strip() if isinstance(given, str) else ""
    if not _EXECUTION_ID.match(execution):
        execution = uuid.uuid4().hex[:16]
    return RequestContext(execution, trace_id, span_id, sampled)


@contextlib.contextmanager
def request_context(headers: Any) -> Iterator[RequestContext]:
    """Attach one request's trace and execution id to every line logged inside."""
    configure()
    context = context_from_headers(headers)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def trace_resource(trace_id: str) -> str:
    """`projects/{GOOGLE_CLOUD_PROJECT}/traces/{trace id}`, the form Cloud Logging links."""
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "").strip()
    return f"projects/{project}/traces/{trace_id}" if project else trace_id


def _safe_key(key: str) -> str:
    while key in RESERVED or key.startswith(_GOOGLE_PREFIX):
        key = "field_" + key
    return key


def _time(record: logging.LogRecord) -> str:
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": _time(record),
            "logger": record.name,
        }
        context = _current.get()
        if context is not None:
            if context.trace_id:
                entry[TRACE_KEY] = trace_resource(context.trace_id)
                if context.span_id:
                    entry[SPAN_KEY] = context.span_id
                if context.sampled is not None:
                    entry[SAMPLED_KEY] = context.sampled
            entry["execution_id"] = context.execution_id
            entry[LABELS_KEY] = {"execution_id": context.execution_id}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry[_safe_key(str(key))] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`time SEVERITY message key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_time(record), record.levelname, record.getMessage()]
        context = _current.get()
        if context is not None:
            parts.append(f"execution_id={context.execution_id}")
            if context.trace_id:
                parts.append(f"trace={context.trace_id}")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            parts += [f"{_safe_key(str(k))}={v}" for k, v in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _StdoutHandler(logging.Handler):
    """Writes to whatever `sys.stdout` (or `sys.stderr`) is at the time (tests capture it)."""

    def __init__(self, to_stderr: bool = False) -> None:
        super().__init__()
        self.to_stderr = to_stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if self.to_stderr else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never break a request
            self.handleError(record)


def json_lines_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """`CALSYNC_JSON_LOGS` (default true; anything unrecognised keeps JSON)."""
    env = os.environ if environ is None else environ
    return env.get("CALSYNC_JSON_LOGS", "true").strip().lower() not in (
        "0", "false", "no", "off")


_handler: _StdoutHandler | None = None
_root_handler: _StdoutHandler | None = None


def configure(json_lines: bool | None = None, level: int = logging.INFO) -> None:
    """Install the stdout handler once (later calls only change an explicit format).

    With `json_lines` None the format comes from `CALSYNC_JSON_LOGS`. Warnings
    that libraries log through the root logger get the same format, so every
    line on stdout is one JSON object.
    """
    global _handler, _root_handler
    if _handler is not None:
        if json_lines is not None:
            for handler in (_handler, _root_handler):
                if handler is not None:
                    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
        return
    if json_lines is None:
        json_lines = json_lines_enabled()
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(level)
    _LOGGER.propagate = False
    _handler = handler
    _root_handler = _StdoutHandler()
    _root_handler.setLevel(logging.WARNING)
    _root_handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    logging.getLogger().addHandler(_root_handler)


def reset() -> None:
    """Remove the handlers (tests that change `CALSYNC_JSON_LOGS`)."""
    global _handler, _root_handler
    if _handler is not None:
        _LOGGER.removeHandler(_handler)
        _handler = None
    if _root_handler is not None:
        logging.getLogger().removeHandler(_root_handler)
        _root_handler = None


@contextlib.contextmanager
def to_stderr(json_lines: bool, level: int = logging.WARNING) -> Iterator[None]:
    """For the operator CLI: lines at `level` and above go to stderr, so stdout holds
    only the command's answer; the previous set-up is restored afterwards."""
    global _handler
    saved, saved_level = _handler, _LOGGER.level
    if saved is not None:
        _LOGGER.removeHandler(saved)
    handler = _StdoutHandler(to_stderr=True)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(level)
    _LOGGER.propagate = False
    _handler = handler
    try:
        yield
    finally:
        _LOGGER.removeHandler(handler)
        _LOGGER.setLevel(saved_level)
        _handler = saved
        if saved is not None:
            _LOGGER.addHandler(saved)


def log(severity: str, message: str, /, **fields: Any) -> None:
    """Log one line; `fields` become top-level JSON keys. Never pass secrets."""
    _emit(severity, message, False, fields)


def log_exception(severity: str, message: str, /, **fields: Any) -> None:
    """Like `log`, inside an `except` block: the line carries the traceback."""
    _emit(severity, message, True, fields)


def _emit(severity: str, message: str, exc_info: bool, fields: dict[str, Any]) -> None:
    if _handler is None:
        configure()
    _LOGGER.log(getattr(logging, severity.upper(), logging.INFO), message,
                exc_info=exc_info, extra={"fields": fields})
