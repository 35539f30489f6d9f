"""Log lines: JSON with severity, message, time and the trace of their request.

The HTTP tests drive the real functions-framework apps of main.py on paths
that need no emulator (rejections, misconfiguration), capturing stdout.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions import app as composition
from functions import logs

MAIN = str(Path(__file__).resolve().parents[3] / "main.py")
PROJECT = "calsync-logs"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_KEY = "logging.googleapis.com/trace"
SHORT_KEY = "c2VjcmV0LXRvby1zaG9ydA=="  # "secret-too-short": a malformed key


@pytest.fixture
def fresh_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("CALSYNC_JSON_LOGS", "FUNCTION_TARGET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    logs.reset()
    yield
    logs.reset()


def _lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must be JSON


def test_fields_never_replace_severity_message_time_or_the_trace(
    fresh_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {"X-Cloud-Trace-Context": f"{TRACE}/1;o=1", "Function-Execution-Id": "exec-7"}
    with logs.request_context(headers):
        logs.log("WARNING", "sync run", severity="DEBUG", message="forged", time="never",
                 execution_id="other", subscription="sub-1", outcome="synced",
                 **{TRACE_KEY: "projects/x/traces/forged"})
    [line] = _lines(capsys.readouterr().out)
    assert line["severity"] == "WARNING" and line["message"] == "sync run"
    assert line["time"].endswith("Z") and line["time"] != "never"
    assert line[TRACE_KEY] == f"projects/{PROJECT}/traces/{TRACE}"
    assert line["logging.googleapis.com/spanId"] == f"{1:016x}"
    assert line["logging.googleapis.com/trace_sampled"] is True
    assert line["execution_id"] == "exec-7"
    assert line["logging.googleapis.com/labels"] == {"execution_id": "exec-7"}
    assert line["field_severity"] == "DEBUG" and line["field_message"] == "forged"
    assert line["field_time"] == "never" and line["field_execution_id"] == "other"
    assert line[f"field_{TRACE_KEY}"] == "projects/x/traces/forged"
    assert line["subscription"] == "sub-1" and line["outcome"] == "synced"


def test_traceparent_is_read_and_a_missing_execution_id_is_generated(
    fresh_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with logs.request_context({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00"}):
        logs.log("INFO", "one")
    with logs.request_context({"X-Cloud-Trace-Context": "not-a-trace"}):
        logs.log("INFO", "two")
    logs.log("INFO", "outside")
    first, second, outside = _lines(capsys.readouterr().out)
    assert first[TRACE_KEY] == f"projects/{PROJECT}/traces/{TRACE}"
    assert first["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert first["logging.googleapis.com/trace_sampled"] is False
    assert first["execution_id"] and first["execution_id"] != second["execution_id"]
    assert TRACE_KEY not in second and second["execution_id"]
    assert TRACE_KEY not in outside and "execution_id" not in outside


def test_the_json_setting_is_read_when_logging_is_configured(
    fresh_logs: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALSYNC_JSON_LOGS", "false")
    logs.configure()  # what an entry point does first, before any Settings exist
    logs.log("INFO", "plain", subscription="sub-2")
    out = capsys.readouterr().out
    assert not out.startswith("{") and "INFO plain subscription=sub-2" in out
    logs.reset()
    monkeypatch.setenv("CALSYNC_JSON_LOGS", "true")
    logs.log("INFO", "structured")  # configured at the first line
    assert _lines(capsys.readouterr().out)[0]["message"] == "structured"


def test_an_exception_is_one_json_line_with_its_traceback(
    fresh_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logs.log_exception("ERROR", "crashed")
    [line] = _lines(capsys.readouterr().out)
    assert line["severity"] == "ERROR" and "RuntimeError: boom" in line["exception"]


@pytest.fixture
def functions(fresh_logs: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    import functions_framework

    for name in ("CALSYNC_REGION", "CALSYNC_TASKS_QUEUE", "CALSYNC_WORKER_URL",
                 "CALSYNC_WEBHOOK_URL", "CALSYNC_CREDENTIAL_KEYS", "CLOUD_TASKS_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALSYNC_CHANNEL_TOKEN_KEYS", "k1:" + SHORT_KEY)
    composition.reset()
    logging.getLogger("calsync").handlers.clear()
    clients = {target: functions_framework.create_app(target=target, source=MAIN).test_client()
               for target in ("webhook", "sync_worker", "renew_channels")}
    try:
        yield clients
    finally:
        composition.reset()


def _trace(n: int) -> dict[str, str]:
    return {"X-Cloud-Trace-Context": f"{n:032x}/{n};o=1", "Function-Execution-Id": f"ex-{n}"}


def test_every_line_of_every_function_is_json_with_its_requests_trace(
    functions: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    token = "v1.k1." + "T" * 43
    note = {"X-Goog-Channel-ID": "ch-1", "X-Goog-Resource-State": "exists",
            "X-Goog-Resource-ID": "res-1", "X-Goog-Message-Number": "3",
            "X-Goog-Channel-Token": token}
    calls = [
        (1, "webhook", {"headers": {"X-Goog-Channel-Token": token}}, 400),
        (2, "webhook", {"headers": note}, 500),  # the malformed key: misconfigured
        (3, "sync_worker", {"data": b"not json"}, 400),
        (4, "sync_worker", {"json": {"subscription_id": "sub-9"}}, 500),  # no settings
        (5, "renew_channels", {"json": {}}, 500),
    ]
    for n, target, kwargs, status in calls:
        headers = {**_trace(n), **kwargs.pop("headers", {})}
        answer = functions[target].post("/", headers=headers, **kwargs)
        assert answer.status_code == status, (target, answer.data)
    lines = _lines(capsys.readouterr().out)
    by_execution = {line["execution_id"]: line for line in lines}
    assert sorted(by_execution) == [f"ex-{n}" for n, *_ in calls] and len(lines) == len(calls)
    for n, *_ in calls:
        line = by_execution[f"ex-{n}"]
        assert line["severity"] in ("WARNING", "ERROR") and line["message"], line
        assert line[TRACE_KEY] == f"projects/{PROJECT}/traces/{n:032x}", line
    assert by_execution["ex-1"]["outcome"] == "bad_request"
    assert by_execution["ex-3"]["outcome"] == "malformed"
    assert by_execution["ex-4"]["subscription"] == "sub-9"
    secrets = [token, SHORT_KEY, base64.b64decode(SHORT_KEY).decode()]
    assert not any(secret in json.dumps(line) for line in lines for secret in secrets)


def test_an_unexpected_exception_is_a_logged_500_with_the_trace(
    functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken() -> Any:
        raise KeyError("surprise")

    monkeypatch.setattr(composition, "renewer", broken)
    answer = functions["renew_channels"].post("/", headers=_trace(6), json={})
    assert answer.status_code == 500 and b"internal error" in answer.data
    [line] = _lines(capsys.readouterr().out)
    assert line["message"] == "unhandled exception" and line["error"] == "KeyError"
    assert line[TRACE_KEY].endswith(f"{6:032x}") and "surprise" in line["exception"]


def test_library_warnings_are_json_lines_with_the_trace_too(
    fresh_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure()
    with logs.request_context({"X-Cloud-Trace-Context": f"{TRACE}/3"}):
        logging.getLogger("urllib3.connectionpool").warning("Retrying %s", "(Total=2)")
        logging.getLogger("urllib3.connectionpool").info("not shown")
    [line] = _lines(capsys.readouterr().out)
    assert line["severity"] == "WARNING" and line["message"] == "Retrying (Total=2)"
    assert line["logger"] == "urllib3.connectionpool" and line[TRACE_KEY].endswith(TRACE)
