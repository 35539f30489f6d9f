"""Issue 21, item 5 on the emulators: only real progress continues the renewer, the
sweep keeps one task chain per stuck request (through the Cloud Tasks emulator),
permanent errors end in `error` after a bounded number of attempts (events.list
and events.watch), and abandoned channel records are cleaned up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from functions.adapters.google.tasks import CloudTasksQueue
from functions.errors import CalendarGone, CalendarRequestRejected, CalendarUnavailable
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import EventPage, Subscription
from functions.ports import CalendarPort
from functions.sync.engine import Outcome, SyncEngine, SyncSettings
from tests.integration.lifecycle.conftest import Lifecycle
from tests.receiver import Receiver


def test_failed_renewals_are_not_progress_so_no_continuation(lifecycle: Lifecycle) -> None:
    lifecycle.configure(CALSYNC_SAFETY_NET_INTERVAL_SECONDS=str(30 * 86400))  # out of the way
    for n in range(3):
        lifecycle.served(lifecycle.subscribe_with_channel(f"cal-{n}")[0])
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.fail_next = [CalendarUnavailable("outage")] * 10
    report = lifecycle.renewer(batch=2).run()
    assert report.failed == 2 and report.renewed == 0
    assert not report.continued and lifecycle.continued == []


@pytest.fixture
def worker() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def _on_the_tasks_emulator(lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str,
                           worker: Receiver) -> None:
    project, _, location, _, queue = tasks_queue.split("/")[1:6]
    lifecycle.configure(CALSYNC_WORKER_URL=worker.url, CLOUD_TASKS_EMULATOR_HOST=tasks_emulator,
                        CALSYNC_TASK_MAX_BACKOFF_SECONDS="600")
    tasks = CloudTasksQueue(lifecycle.settings, queue_path=tasks_queue)
    lifecycle.service = SubscriptionService(lifecycle.settings, lifecycle.subs,
                                            lifecycle.calendar, lifecycle.store, tasks,
                                            clock=lambda: lifecycle.clock[0])


def _task_names(worker: Receiver, sub_id: str) -> list[str]:
    return [headers["x-cloudtasks-taskname"] for _, headers, body in worker.requests
            if json.loads(body) == {"subscription_id": sub_id}]


def test_the_sweep_requeues_a_stranded_request_once_per_chain(
    lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str, worker: Receiver,
) -> None:
    _on_the_tasks_emulator(lifecycle, tasks_emulator, tasks_queue, worker)
    sub = Subscription(id="s-stranded", calendar_id="cal-a", owner="alice",
                       credentials_ref="bearer")
    lifecycle.subs.create_or_get(sub, lifecycle.clock[0])  # the API died before enqueueing
    lifecycle.advance(minutes=3)
    first = lifecycle.renewer().run()
    second = lifecycle.renewer().run()  # the same instant, the same sweep bucket
    assert first.swept == 1 and second.swept == 0
    assert len(worker.wait_for(1)) == 1
    # The chain it started keeps failing and is retried by the queue (runs every
    # few minutes, each taking the lease): no second chain while it runs.
    start = lifecycle.clock[0]
    for minute in range(1, 21):
        lifecycle.clock[0] = start + timedelta(minutes=minute)
        if minute % 4 == 0:
            lifecycle.writer(sub.id, lease_started_at=lifecycle.clock[0], claimed_gen=1)
        lifecycle.renewer().run()
    assert len(_task_names(worker, sub.id)) == 1
    # Then it ran out of attempts: silent past the queue's longest backoff, the
    # request gets one new chain.
    for minute in range(21, 35):
        lifecycle.clock[0] = start + timedelta(minutes=minute)
        lifecycle.renewer().run()
    worker.wait_for(2, timeout=5)
    names = _task_names(worker, sub.id)
    assert len(names) == 2 and len(set(names)) == 2, names


class RejectingCalendar(CalendarPort):
    """events.list answers 400 for the request itself until `rejecting` is cleared."""

    def __init__(self) -> None:
        self.rejecting = True

    def list_page(self, subscription: Subscription, *, sync_token: str | None,
                  page_token: str | None, page_size: int) -> EventPage:
        if self.rejecting:
            raise CalendarRequestRejected("calendar 400 invalid: Bad Request")
        return EventPage(items=(), next_sync_token="token-1")


def test_events_list_refusing_the_request_ends_in_error_after_bounded_attempts(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    calendar = RejectingCalendar()
    engine = SyncEngine(lifecycle.store, calendar, lifecycle.queue,
                        SyncSettings(give_up_attempts=3), clock=lambda: lifecycle.clock[0])

    def run() -> Outcome:
        lifecycle.advance(seconds=10)
        return engine.run(sub_id).outcome

    assert [run(), run()] == [Outcome.TRANSIENT, Outcome.TRANSIENT]  # retried (500)
    calendar.rejecting = False
    assert run() is Outcome.SYNCED  # a success starts the count again
    calendar.rejecting = True
    lifecycle.store.record_sync_request(sub_id, lifecycle.clock[0])
    assert [run(), run(), run()] == [Outcome.TRANSIENT, Outcome.TRANSIENT, Outcome.FAILED]
    doc = lifecycle.doc(sub_id)
    assert doc["status"] == "error" and doc["last_error_reason"] == "calendar_request_rejected"
    assert "Bad Request" in doc["last_error"]


def test_a_watch_refused_for_the_request_itself_ends_in_error(lifecycle: Lifecycle) -> None:
    lifecycle.configure(CALSYNC_GIVE_UP_ATTEMPTS="3")
    sub_id = lifecycle.subscribe("holiday")
    lifecycle.served(sub_id)
    lifecycle.calendar.refused["holiday"] = CalendarRequestRejected(
        "calendar 400 pushNotSupportedForRequestedResource: push not supported")
    sub = lifecycle.store.get_subscription(sub_id)
    assert sub is not None
    lifecycle.service.ensure_channel(sub)
    for _ in range(6):
        lifecycle.advance(minutes=10)
        lifecycle.renewer().run()
    doc = lifecycle.doc(sub_id)
    assert doc["status"] == "error" and doc["last_error_reason"] == "calendar_request_rejected"
    assert "pushNotSupported" in doc["last_error"]
    assert len(lifecycle.calendar.watched()) == 3
    assert lifecycle.subs.delivering_channels(sub_id) == []


def test_a_calendar_gone_on_renewal_ends_in_error(lifecycle: Lifecycle) -> None:
    lifecycle.configure(CALSYNC_GIVE_UP_ATTEMPTS="2")
    sub_id, _ = lifecycle.subscribe_with_channel("gone")
    lifecycle.served(sub_id)
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.refused["gone"] = CalendarGone("calendar_not_found: calendar 404")
    for _ in range(4):
        lifecycle.renewer().run()
        lifecycle.advance(minutes=10)
    doc = lifecycle.doc(sub_id)
    assert doc["status"] == "error" and doc["last_error_reason"] == "calendar_not_found"
    assert len(lifecycle.calendar.watched()) == 3


def test_abandoned_channel_records_are_deleted_once_expired_a_batch_per_run(
    lifecycle: Lifecycle,
) -> None:
    lifecycle.configure(CALSYNC_CHANNEL_RECORD_RETENTION_SECONDS="3600")
    ids: list[str] = []
    for n in range(3):
        sub_id, channel_id = lifecycle.subscribe_with_channel(f"cal-{n}")
        sub = lifecycle.store.get_subscription(sub_id)
        assert sub is not None and lifecycle.service.mark_error(sub, "revoked")
        ids.append(channel_id)
    lifecycle.advance(days=7, minutes=30)
    assert lifecycle.renewer(batch=2).run().channels_deleted == 0  # kept an hour past expiry
    lifecycle.advance(minutes=31)
    assert [lifecycle.renewer(batch=2).run().channels_deleted for _ in range(2)] == [2, 1]
    channels: list[Any] = list(lifecycle.db.collection("channels").stream())
    assert channels == []

