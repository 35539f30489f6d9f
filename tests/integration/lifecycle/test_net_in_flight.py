"""The safety net's probes of one run go out several at once, on the real emulators.

A probe is a chain of round trips (eight to Firestore, a task create); one after
another, a run of the full batch (1,160 at the default settings) took 38 s on the
emulator and minutes at production latencies, against the 10 s its batch is sized to
(bench/safety_net.py, README "Scale and cost"). These tests hold the deployed renewer
to making up to `NET_PROBES_IN_FLIGHT` probes at once, never more, and the guarantees
that held one after another: the batch is a bound, each due subscription gets one
task, two runs at once split the rows rather than doubling them.

The probes are made to meet (a barrier in the task create, with a timeout so a run
that never overlaps ends): nothing here measures time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from google.cloud import tasks_v2

from functions import app
from functions.adapters.google.tasks import CloudTasksQueue
from functions.config import RENEWER, Settings
from functions.lifecycle.renewer import Renewer
from functions.lifecycle.request_sweeps import NET_PROBES_IN_FLIGHT
from functions.lifecycle.subscriptions import SubscriptionService
from infra.local import components
from tests.integration.lifecycle.conftest import BASE_ENV, Lifecycle

MEET_TIMEOUT = 20.0  # bounds a wait for probes that never come (one at a time)


class Meeting:
    """Wraps a queue's `enqueue_sync`: each call waits for `size` calls to be in it at
    once (or the timeout), then creates the task; records the most in it at once."""

    def __init__(self, enqueue: Callable[..., None], size: int) -> None:
        self._enqueue = enqueue
        self._barrier = threading.Barrier(size)
        self._lock = threading.Lock()
        self.in_flight = self.peak = 0

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            # Broken: they never met, and the run goes on one probe at a time.
            with contextlib.suppress(threading.BrokenBarrierError):
                self._barrier.wait(MEET_TIMEOUT)
            self._enqueue(*args, **kwargs)
        finally:
            with self._lock:
                self.in_flight -= 1


def _due(lifecycle: Lifecycle, count: int) -> list[str]:
    """`count` quiet subscriptions due for a probe: synced two intervals ago, nothing
    pending, a healthy channel, in the shapes the stores write."""
    ids = []
    now = lifecycle.clock[0]
    for i in range(count):
        sub_id = f"net-{i:03d}"
        synced = now - timedelta(days=2, seconds=i)
        lifecycle.db.document(f"subscriptions/{sub_id}").set({
            "calendar_id": f"cal-{i}@example.com", "owner": "alice",
            "credentials_ref": "bearer", "status": "active", "requested_gen": 3,
            "queued_gen": 3, "requested_at": None, "retry_at": None,
            "last_synced_at": synced, "created_at": now - timedelta(days=30),
            "channel_id": f"chan-{i}", "channel_expiration": now + timedelta(days=5),
            "labels": {}, "safety_net_at": synced})
        lifecycle.writer(sub_id, synced_gen=3, claimed_gen=3, change_seq=1, sync_token="t")
        ids.append(sub_id)
    return ids


def _paused(tasks_emulator: str, tasks_queue: str) -> None:
    """Tasks are created and listed, never dispatched (the worker is not running)."""
    components.tasks_client(tasks_emulator).pause_queue(
        request=tasks_v2.PauseQueueRequest(name=tasks_queue), timeout=10)


def _task_subs(tasks_emulator: str, tasks_queue: str) -> list[str]:
    """The subscription each created task is for (from its body), one per task."""
    import json

    client = components.tasks_client(tasks_emulator)
    tasks = client.list_tasks(request=tasks_v2.ListTasksRequest(
        parent=tasks_queue, response_view=tasks_v2.Task.View.FULL), timeout=30)
    return [json.loads(t.http_request.body)["subscription_id"] for t in tasks]


def _renewer(lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str, in_flight: int,
             net_batch: int, meet: int | None = None) -> tuple[Renewer, Meeting]:
    """A renewer over the real stores and a real queue whose task creates meet in
    groups of `meet` (default `in_flight`)."""
    queue = CloudTasksQueue(lifecycle.settings, client=components.tasks_client(tasks_emulator),
                            queue_path=tasks_queue)
    meeting = Meeting(queue.enqueue_sync, meet or in_flight)
    queue.enqueue_sync = meeting  # type: ignore[method-assign]
    service = SubscriptionService(lifecycle.settings, lifecycle.subs, lifecycle.calendar,
                                  lifecycle.store, queue, clock=lambda: lifecycle.clock[0])
    renewer = Renewer(lifecycle.settings, lifecycle.subs, service,
                      continue_later=lambda _at, name: lifecycle.continued.append(name),
                      clock=lambda: lifecycle.clock[0], net_batch=net_batch,
                      net_in_flight=in_flight)
    return renewer, meeting


def test_the_deployed_renewer_makes_its_probes_several_at_once_never_more(
    lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`app.renewer()`, the queue its own: two rounds of NET_PROBES_IN_FLIGHT due
    probes are made that many at a time (one after another before: the first probe
    waited out the meeting alone), every subscription gets exactly one task."""
    due = _due(lifecycle, 2 * NET_PROBES_IN_FLIGHT)
    _paused(tasks_emulator, tasks_queue)
    env = {**BASE_ENV, "CLOUD_TASKS_EMULATOR_HOST": tasks_emulator,
           "CALSYNC_TASKS_QUEUE": tasks_queue.rsplit("/", 1)[-1], "CALSYNC_JSON_LOGS": "false"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app.reset()
    try:
        config = Settings.from_env(env, function=RENEWER)
        queue = app.task_queue(config)
        meeting = Meeting(queue.enqueue_sync, NET_PROBES_IN_FLIGHT)
        queue.enqueue_sync = meeting
        report = app.renewer(config).run()
    finally:
        app.reset()

    assert meeting.peak == NET_PROBES_IN_FLIGHT, (
        f"at most {meeting.peak} probe(s) in flight, {NET_PROBES_IN_FLIGHT} expected")
    assert report.safety_net == len(due) and report.errors == []
    assert sorted(_task_subs(tasks_emulator, tasks_queue)) == due
    assert {lifecycle.doc(sub_id)["queued_gen"] for sub_id in due} == {4}


def test_the_batch_stays_a_bound_with_probes_in_flight(
    lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str,
) -> None:
    """Twelve due, a batch of eight, four at a time: eight probes, eight tasks, the
    run continues for the rest, and the next run probes the other four."""
    due = _due(lifecycle, 12)
    _paused(tasks_emulator, tasks_queue)
    renewer, meeting = _renewer(lifecycle, tasks_emulator, tasks_queue, 4, net_batch=8)

    first = renewer.run()

    assert first.safety_net == 8 and first.continued and first.errors == []
    assert meeting.peak == 4
    assert len(_task_subs(tasks_emulator, tasks_queue)) == 8
    renewer, _ = _renewer(lifecycle, tasks_emulator, tasks_queue, 4, net_batch=8)
    second = renewer.run()
    assert second.safety_net == 4 and second.errors == []
    assert sorted(_task_subs(tasks_emulator, tasks_queue)) == due


def test_two_runs_at_once_with_probes_in_flight_queue_each_subscription_once(
    lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str,
) -> None:
    """Each probe claims its row with a conditioned update first: two runs acting on
    the same due rows, four probes at a time each, queue one task per subscription."""
    due = _due(lifecycle, 16)
    _paused(tasks_emulator, tasks_queue)
    # Which run wins which row is a race: their creates need not meet in fours.
    runs = [_renewer(lifecycle, tasks_emulator, tasks_queue, 4, net_batch=200, meet=1)[0]
            for _ in range(2)]
    reports: list[Any] = [None, None]

    def run(index: int) -> None:
        reports[index] = runs[index].run()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(r is not None and r.errors == [] for r in reports)
    assert sum(r.safety_net for r in reports) == len(due)
    assert sorted(_task_subs(tasks_emulator, tasks_queue)) == due
