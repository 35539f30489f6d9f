"""Sharded renewal (issue 19, item 4) on the real Firestore and Cloud Tasks emulators.

A tick queues one named task per shard; each shard renews only its own channels,
at most its budget per slot, continuing at the next slot only on progress; every
due channel is renewed once across the shards; records written before sharding
are given their shard by the tick and then renewed. The emulator does not refuse
a reused task name, so "a repeated tick does the work once" is shown with a queue
double that does, behind the real Cloud Tasks adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import flask
import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from functions import app, entrypoints
from functions.adapters.google.tasks import CloudTasksQueue
from functions.errors import CalendarUnavailable
from functions.lifecycle.renewer import Renewer
from functions.lifecycle.sharding import parse_job, shard_task_name, slot_of, slot_start
from functions.model import channel_shard, shard_values
from tests.integration.lifecycle.conftest import BASE_ENV, Lifecycle
from tests.receiver import Receiver

SHARDS = 4


@dataclass
class NamedQueue:
    """A Cloud Tasks client that refuses a task name it has seen (as production does
    for about an hour); created tasks wait in `pending` until dispatched by hand."""

    seen: set[str] = field(default_factory=set)
    pending: list[tuple[str, bytes]] = field(default_factory=list)
    refused: int = 0

    def create_task(self, parent: str, task: Any, timeout: float | None = None) -> Any:
        name = task.name.rsplit("/", 1)[-1]
        if name in self.seen:
            self.refused += 1
            raise gexc.AlreadyExists(f"task {name} exists")
        self.seen.add(name)
        self.pending.append((name, bytes(task.http_request.body)))
        return task


def _fan_out_env(lifecycle: Lifecycle, **env: str) -> None:
    lifecycle.configure(**{"CALSYNC_RENEWAL_SHARDS": str(SHARDS),
                           "CALSYNC_RENEWER_URL": "http://127.0.0.1:3/",
                           "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": str(30 * 86400), **env})


def _renewer(lifecycle: Lifecycle, queue: NamedQueue, batch: int = 200) -> Renewer:
    tasks = CloudTasksQueue(lifecycle.settings, client=queue,
                            queue_path="projects/p/locations/l/queues/renewer")
    return Renewer(lifecycle.settings, lifecycle.subs, lifecycle.service, batch=batch,
                   clock=lambda: lifecycle.clock[0], renewer_tasks=tasks.enqueue_renewal)


def _dispatch(renewer: Renewer, queue: NamedQueue) -> list[tuple[str, Any]]:
    """Run every queued task as the renewer's handler would; (name, report) each."""
    ran = []
    while queue.pending:
        name, body = queue.pending.pop(0)
        job = parse_job(body)
        report = (renewer.run_shard(job.shard, job.shards) if job.shard is not None
                  else renewer.run(fan_out=job.fan_out))
        ran.append((name, report))
    return ran


def _due(lifecycle: Lifecycle, count: int) -> dict[str, str]:
    """`count` served subscriptions whose channels are inside the renewal window:
    {old channel id: subscription id}."""
    channels = {}
    for n in range(count):
        sub_id, channel_id = lifecycle.subscribe_with_channel(f"cal-{n}")
        lifecycle.served(sub_id)
        channels[channel_id] = sub_id
    lifecycle.advance(days=6, hours=12)
    return channels


def test_a_tick_queues_one_task_per_shard_named_for_its_slot(
    lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str,
) -> None:
    receiver = Receiver()
    try:
        _fan_out_env(lifecycle, CALSYNC_RENEWER_URL=receiver.url,
                     CLOUD_TASKS_EMULATOR_HOST=tasks_emulator)
        queue = CloudTasksQueue(lifecycle.settings, queue_path=tasks_queue)
        renewer = Renewer(lifecycle.settings, lifecycle.subs, lifecycle.service,
                          clock=lambda: lifecycle.clock[0], renewer_tasks=queue.enqueue_renewal)
        assert renewer.run().fanned_out == SHARDS
        first = receiver.wait_for(SHARDS)[:SHARDS]
        renewer.run()  # the same slot again: the same names (the emulator re-sends them)
        second = receiver.wait_for(2 * SHARDS)[SHARDS:]
    finally:
        receiver.close()
    slot = slot_of(lifecycle.clock[0], lifecycle.settings)
    expected = {shard_task_name(k, SHARDS, slot): {"shard": k, "shards": SHARDS}
                for k in range(SHARDS)}
    for delivered in (first, second):
        assert {h["x-cloudtasks-taskname"]: json.loads(b) for _, h, b in delivered} == expected


def test_a_repeated_tick_runs_each_shard_once_and_renews_every_channel_once(
    lifecycle: Lifecycle,
) -> None:
    _fan_out_env(lifecycle)
    old = _due(lifecycle, 24)
    queue = NamedQueue()
    renewer = _renewer(lifecycle, queue)
    lifecycle.calendar.calls.clear()
    renewer.run()
    renewer.run()  # Cloud Scheduler's retry, or the CLI, in the same slot
    assert queue.refused == SHARDS
    ran = _dispatch(renewer, queue)
    assert sorted(name for name, _ in ran) == sorted(
        shard_task_name(k, SHARDS, slot_of(lifecycle.clock[0], lifecycle.settings))
        for k in range(SHARDS))
    # Each shard renewed exactly the due channels whose shard it covers, read no other.
    for _, report in ran:
        mine = [c for c in old if channel_shard(c) in shard_values(report.shard, SHARDS)]
        assert report.renewed == len(mine) and report.channel_reads == len(mine)
    assert sorted(lifecycle.calendar.stopped()) == sorted(old)  # each old channel once
    assert len(lifecycle.calendar.watched()) == len(old)
    for sub_id in old.values():
        assert len(lifecycle.delivering(sub_id)) == 1
    assert renewer.run_shard(0, SHARDS).renewed == 0  # nothing left, nothing missed


def test_channels_written_before_sharding_are_given_their_shard_and_renewed(
    lifecycle: Lifecycle,
) -> None:
    _fan_out_env(lifecycle, CALSYNC_DISPATCH_DEADLINE_SECONDS="600")
    old = _due(lifecycle, 10)
    for channel_id in old:  # as the previous version wrote them: no shard
        lifecycle.db.document(f"channels/{channel_id}").update({"shard": firestore.DELETE_FIELD})
    queue = NamedQueue()
    renewer = _renewer(lifecycle, queue, batch=3)
    assert sum(renewer.run_shard(k, SHARDS).renewed for k in range(SHARDS)) == 0  # unseen
    reports = _dispatch(renewer, queue)
    tick = renewer.run()
    # Bounded steps (a batch of 3, read past 5 times), continued while they progress.
    while tick.continued:
        tick = renewer.run(fan_out=False)
    assert sum(d.get("shard") is not None for d in
               (lifecycle.subs.channel_doc(c) for c in old)) == len(old)
    reports = _dispatch(renewer, queue)
    assert sum(r.renewed for _, r in reports) == len(old)
    marker = lifecycle.subs.shard_backfill()
    assert marker["passes"] == 1 and marker["done_at"] is None  # old writers may linger
    lifecycle.advance(minutes=11)  # past the dispatch deadline since the first pass
    lifecycle.calendar.calls.clear()
    while renewer.run(fan_out=False).continued:
        pass
    marker = lifecycle.subs.shard_backfill()
    assert marker["passes"] == 2 and marker["done_at"] == lifecycle.clock[0]
    assert lifecycle.calendar.calls == []


def test_a_shard_starts_at_most_its_budget_and_continues_at_the_next_slot_on_progress(
    lifecycle: Lifecycle,
) -> None:
    # 8 renewals a minute over 4 shards, 60 s slots: 2 watches per shard run.
    _fan_out_env(lifecycle, CALSYNC_RENEWALS_PER_MINUTE="8")
    old = _due(lifecycle, 24)
    by_shard = {k: [c for c in old if channel_shard(c) in shard_values(k, SHARDS)]
                for k in range(SHARDS)}
    shard = max(by_shard, key=lambda k: len(by_shard[k]))
    assert len(by_shard[shard]) > 2
    queue = NamedQueue()
    renewer = _renewer(lifecycle, queue)
    report = renewer.run_shard(shard, SHARDS)
    assert report.renewed == 2 and report.continued
    slot = slot_of(lifecycle.clock[0], lifecycle.settings)
    [(name, body)] = queue.pending
    assert name == shard_task_name(shard, SHARDS, slot + 1)
    assert json.loads(body) == {"shard": shard, "shards": SHARDS}
    # The next tick names the same task: the continuation and the tick run it once.
    lifecycle.clock[0] = slot_start(slot + 1, lifecycle.settings) + timedelta(seconds=1)
    renewer.run()
    assert queue.refused == 1 and len(queue.pending) == SHARDS
    # Failures are no progress: a shard whose watches all fail does not continue.
    queue.pending.clear()
    lifecycle.calendar.fail_next = [CalendarUnavailable("outage")] * 10
    failing = renewer.run_shard(shard, SHARDS)
    assert failing.failed == 2 and failing.renewed == 0 and not failing.continued
    assert queue.pending == []


def test_the_tick_runs_the_other_sections_and_continues_them_without_fanning_out_again(
    lifecycle: Lifecycle,
) -> None:
    _fan_out_env(lifecycle)
    for n in range(3):
        lifecycle.subscribe(f"cal-{n}")  # requests whose tasks were lost
    lifecycle.queue.tasks.clear()
    lifecycle.advance(minutes=5)
    queue = NamedQueue()
    tick = _renewer(lifecycle, queue, batch=2).run()
    assert tick.swept == 2 and tick.continued and tick.fanned_out == SHARDS
    continuation = [(n, b) for n, b in queue.pending if not n.startswith("renew-s")]
    assert [json.loads(b) for _, b in continuation] == [{"fan_out": False}]
    queue.pending = [t for t in queue.pending if t in continuation]
    [(_, report)] = _dispatch(_renewer(lifecycle, queue, batch=2), queue)
    assert report.swept == 1 and report.fanned_out == 0


@pytest.fixture
def flask_app() -> Iterator[flask.Flask]:
    yield flask.Flask(__name__)


@pytest.mark.parametrize("body, reason", [
    (b"[1]", "body must be a JSON object"),
    (b"{\"shard\": 1}", "shards must be a whole number from 2 to 32"),
    (b"{\"shard\": 4, \"shards\": 4}", "shard must be a whole number from 0 to shards - 1"),
    (b"{\"shard\": 0, \"shards\": 1}", "shards must be a whole number from 2 to 32"),
    (b"{\"fan_out\": \"no\"}", "fan_out must be true or false"),
    (b"{\"shards\": 2, \"shard\": 0, \"fan_out\": false}", "fan_out applies to a tick"),
    (b"{\"tick\": 1}", "unknown field 'tick'"),
    (b"{", "body is not JSON"),
])
def test_a_malformed_renewer_body_is_a_400_with_its_reason(
    flask_app: flask.Flask, body: bytes, reason: str,
) -> None:
    with flask_app.test_request_context("/", method="POST", data=body):
        answer = entrypoints.renew_channels(flask.request)
    assert answer.status_code == 400 and reason in answer.get_data(as_text=True)


def test_the_deployed_handler_fans_a_tick_out_and_runs_a_shard(
    lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str, flask_app: flask.Flask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """app.renewer() wires the renewer's queue: `{}` fans out, a shard body runs it."""
    receiver = Receiver()
    queue_id = tasks_queue.rsplit("/", 1)[-1]
    env = {**BASE_ENV, "CALSYNC_RENEWAL_SHARDS": "2", "CALSYNC_RENEWER_URL": receiver.url,
           "CLOUD_TASKS_EMULATOR_HOST": tasks_emulator, "CALSYNC_TASKS_QUEUE": "unused",
           "CALSYNC_RENEWER_QUEUE": queue_id, "CALSYNC_JSON_LOGS": "false"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app.reset()
    try:
        with flask_app.test_request_context("/", method="POST", data=b"{}"):
            tick = json.loads(entrypoints.renew_channels(flask.request).get_data())
        delivered = receiver.wait_for(2)
        with flask_app.test_request_context("/", method="POST", data=delivered[0][2]):
            shard = json.loads(entrypoints.renew_channels(flask.request).get_data())
    finally:
        receiver.close()
        app.reset()
    assert tick["fanned_out"] == 2 and len(delivered) == 2
    assert sorted(json.loads(b)["shard"] for _, _, b in delivered) == [0, 1]
    assert shard["shards"] == 2 and shard["renewed"] == 0 and shard["errors"] == []


def test_the_slot_start_of_a_slot_is_in_it(lifecycle: Lifecycle) -> None:
    settings = replace(lifecycle.settings, renewal_slot=60)
    moment = datetime.fromisoformat("2026-11-21T12:00:59+00:00")
    assert slot_start(slot_of(moment, settings), settings) == moment.replace(second=0)
