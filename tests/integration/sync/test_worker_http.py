"""The `sync_worker` function through functions-framework's real Flask app, with the
Firestore, Calendar and Cloud Tasks emulators behind it (composition root as deployed)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from functions import app as composition
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.google.tasks import build_client
from functions.model import Subscription
from infra.calendar_emulator.testing import calendar_service

USER = "dana@example.com"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({"message": record.getMessage(), **getattr(record, "fields", {})})


@pytest.fixture
def http(firestore_db: Any, calendar: Any, tasks_emulator: str, tasks_queue: str,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import functions_framework

    _, _, _, region, _, queue = tasks_queue.split("/")
    for name, value in {
        "CALSYNC_REGION": region,
        "CALSYNC_TASKS_QUEUE": queue,
        "CALSYNC_WORKER_URL": "http://127.0.0.1:9/never",
        "CLOUD_TASKS_EMULATOR_HOST": tasks_emulator,
        "CALENDAR_API_ENDPOINT": calendar.api_endpoint,
        "CALSYNC_PAGE_SIZE": "3",
        # The first channel's watch and every page of a run in one task (one task is
        # one call by default: a pass that pages goes on in follow-up tasks,
        # tests/integration/sync/test_call_budget.py); these tests look at what one
        # run answers and logs.
        "CALSYNC_CALLS_PER_SYNC_TASK": "4",
        # The worker opens a subscription's first channel before it lists.
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "CALSYNC_CHANNEL_TOKEN_KEYS": "k:" + "a" * 44,
    }.items():
        monkeypatch.setenv(name, value)
    composition.reset()
    store = FirestoreStore(firestore_db)
    store.save_subscription(Subscription(id="sub-w", calendar_id="primary", owner=USER,
                                         credentials_ref="bearer"))
    lines = _Lines()
    logger = logging.getLogger("calsync")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    client = functions_framework.create_app(target="sync_worker", source="main.py").test_client()
    client.store, client.lines, client.queue = store, lines.records, tasks_queue
    try:
        yield client
    finally:
        logger.removeHandler(lines)
        composition.reset()


def _post(http: Any, body: Any) -> Any:
    if isinstance(body, dict):
        return http.post("/", json=body)
    return http.post("/", data=body, content_type="application/json")


def _queued(http: Any) -> list[Any]:
    return list(build_client(composition.settings()).list_tasks(parent=http.queue))


def _insert(calendar: Any, count: int) -> None:
    api = calendar_service(calendar.base_url, USER)
    for i in range(count):
        api.events().insert(calendarId="primary", body={
            "summary": f"e{i}", "start": {"date": f"2031-02-{i + 1:02d}"},
            "end": {"date": f"2031-02-{i + 2:02d}"}}).execute()


def test_sync_answers_200_and_logs_one_line(http: Any, calendar: Any):
    _insert(calendar, 7)
    answer = _post(http, {"subscription_id": "sub-w"})
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "synced\n"
    [line] = [r for r in http.lines if r["message"] == "sync run"]
    assert line["subscription"] == "sub-w" and line["outcome"] == "synced"
    assert line["mode"] == "full" and line["pages"] == 3 and line["items"] == 7
    assert line["entries"] == {"created": 7, "updated": 0, "deleted": 0}
    assert line["duration_s"] >= 0
    assert len(http.store.list_changes("sub-w", 0, 100).entries) == 7


@pytest.mark.parametrize("body", [b"nope", b"{}", b'{"subscription_id": 3}', b"[1]"])
def test_malformed_body_is_400_with_one_line(http: Any, body: bytes):
    answer = _post(http, body)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400 and text.count("\n") == 1 and text.strip()


def test_unknown_subscription_is_200_and_writes_nothing(http: Any):
    answer = _post(http, {"subscription_id": "ghost"})
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "not_found\n"
    assert http.store.get_subscription("ghost") is None


def test_rate_limited_is_200_with_a_follow_up_task(http: Any, calendar: Any):
    calendar.control.inject_failure("events.list", 429, "rateLimitExceeded", count=2)
    answer = _post(http, {"subscription_id": "sub-w"})
    assert answer.status_code == 200 and answer.get_data(as_text=True).startswith("rate_limited")
    assert http.store.get_subscription("sub-w").retry_at is not None
    [task] = _queued(http)
    assert b'"sub-w"' in task.http_request.body


@pytest.mark.parametrize("status", [500, 503])
def test_transient_calendar_failure_is_500(http: Any, calendar: Any, status: int):
    calendar.control.inject_failure("events.list", status, "backendError", count=2)
    answer = _post(http, {"subscription_id": "sub-w"})
    assert answer.status_code == 500
    assert http.store.get_writer_state("sub-w").get("sync_token") is None
    assert _post(http, {"subscription_id": "sub-w"}).status_code == 200


@pytest.mark.parametrize(("status", "reason"), [(401, "authError"), (404, "notFound")])
def test_permanent_failure_is_200_with_the_subscription_in_error(
    http: Any, calendar: Any, status: int, reason: str
):
    calendar.control.inject_failure("events.list", status, reason)
    answer = _post(http, {"subscription_id": "sub-w"})
    assert answer.status_code == 200 and answer.get_data(as_text=True).startswith("failed")
    sub = http.store.get_subscription("sub-w")
    assert sub.status == "error" and sub.last_error


def test_busy_is_200(http: Any):
    store = http.store
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    store.acquire_lease("sub-w", now, now + timedelta(seconds=120))
    answer = _post(http, {"subscription_id": "sub-w"})
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "busy\n"


def test_an_event_firestore_refuses_is_200_with_the_subscription_in_error(
    http: Any, calendar: Any
):
    api = calendar_service(calendar.base_url, USER)
    big = api.events().insert(calendarId="primary", body={
        "summary": "huge", "description": "x" * 1_100_000, "start": {"date": "2031-03-01"},
        "end": {"date": "2031-03-02"}}).execute()
    answer = _post(http, {"subscription_id": "sub-w"})
    assert answer.status_code == 200 and answer.get_data(as_text=True).startswith("failed")
    sub = http.store.get_subscription("sub-w")
    assert sub.status == "error"
    assert f"event {big['id']} is" in sub.last_error and "1 MiB document limit" in sub.last_error
    # The queue's retry (or any later task) ends at once: no retry for ever.
    again = _post(http, {"subscription_id": "sub-w"})
    assert again.status_code == 200 and again.get_data(as_text=True) == "inactive\n"
