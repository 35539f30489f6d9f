"""Sync requests on the real Firestore emulator: "pending" means a task is known
to be queued (issue 10, items 2, 3 and 5).

Each test fails on the code before the fix: a redelivery after a failed
enqueue found the request "pending" and queued nothing; a deferral re-created
its own task name (Cloud Tasks answers AlreadyExists and the only task of the
request was deleted); a served request kept `requested_at`, so the sweep paid
a transaction for it.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.google.tasks import task_id
from functions.errors import QueueUnavailable
from functions.intake import channel_tokens
from functions.intake.webhook import Notification, WebhookService
from functions.model import Channel, LeaseOutcome
from functions.ports import TaskQueue
from functions.sync.engine import Outcome, SyncEngine, SyncSettings
from tests.integration.lifecycle.conftest import Lifecycle

KEYS = {"k": base64.b64decode(base64.b64encode(b"r" * 32))}


class NamedQueue(TaskQueue):
    """A queue double with Cloud Tasks' name rule: a name seen before (within
    about an hour) is refused, which `CloudTasksQueue` treats as already queued."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.refused: list[str] = []

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        name = task_id(sub_id, origin, generation)
        if name in self.names:
            self.refused.append(name)  # AlreadyExists: CloudTasksQueue returns quietly
            return
        self.names.append(name)


class FlakyQueue(NamedQueue):
    def __init__(self, refuse: int) -> None:
        super().__init__()
        self.refuse = refuse

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        if self.refuse:
            self.refuse -= 1
            raise QueueUnavailable("queue refused (injected)")
        super().enqueue_sync(sub_id, generation, not_before, origin=origin)


def _webhook(lifecycle: Lifecycle, queue: TaskQueue, sub_id: str) -> WebhookService:
    channels = FirestoreChannelStore(lifecycle.db)
    channels.save_channel(Channel("ch-1", sub_id, "active", resource_id="res-1",
                                  expiration=lifecycle.clock[0] + timedelta(days=1)),
                          lifecycle.clock[0])
    return WebhookService(channels, lifecycle.store, queue, KEYS, record_interval=5.0,
                          clock=lambda: lifecycle.clock[0])


def _note(number: int) -> Notification:
    return Notification("ch-1", "res-1", "exists", number,
                        channel_tokens.sign("ch-1", KEYS))


def test_a_redelivery_after_a_failed_enqueue_queues_the_task(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    queue = FlakyQueue(refuse=1)
    webhook = _webhook(lifecycle, queue, sub_id)
    first = webhook.handle(_note(2))
    assert first.status == 503 and queue.names == []
    redelivered = webhook.handle(_note(2))  # Google retries the 503
    assert redelivered.status == 200 and redelivered.result == "queued"
    assert queue.names == [task_id(sub_id, "request", 2)]
    doc = lifecycle.db.document(f"subscriptions/{sub_id}").get().to_dict()
    assert doc["requested_gen"] == 2 and doc["queued_gen"] == 2  # no second bump
    burst = webhook.handle(_note(3))  # now pending with a known task: no write, no task
    assert burst.result == "coalesced" and burst.writes == 0 and len(queue.names) == 1


def test_a_deferral_never_recreates_its_own_task_name(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    started = lifecycle.clock[0]
    lifecycle.db.document(f"subscriptions/{sub_id}/state/writer").set(
        {"lease_started_at": started}, merge=True)
    lifecycle.store.record_sync_request(sub_id, started)  # a change after that run started
    queue = NamedQueue()
    clock = [started + timedelta(seconds=1)]
    engine = SyncEngine(lifecycle.store, calendar=None, queue=queue,  # type: ignore[arg-type]
                        settings=SyncSettings(min_sync_interval=2.0), clock=lambda: clock[0])
    first = engine.run(sub_id)
    assert first.outcome is Outcome.DEFERRED
    assert first.retry_at == started + timedelta(seconds=2)
    # The retry is dispatched a little early (clocks differ) and defers again to
    # the same moment: it must queue a task under a new name, not its own.
    clock[0] = started + timedelta(seconds=1.5)
    second = engine.run(sub_id)
    assert second.outcome is Outcome.DEFERRED and second.retry_at == first.retry_at
    assert len(queue.names) == 2 and queue.refused == []


def test_a_follow_up_dispatched_within_the_tolerance_runs_instead_of_deferring(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    started = lifecycle.clock[0]
    lifecycle.db.document(f"subscriptions/{sub_id}/state/writer").set(
        {"lease_started_at": started}, merge=True)
    lifecycle.store.record_sync_request(sub_id, started)
    almost = started + timedelta(seconds=1.9)
    attempt = lifecycle.store.acquire_lease(sub_id, almost, almost + timedelta(minutes=2),
                                            min_gap=timedelta(seconds=2))
    assert attempt.outcome is LeaseOutcome.ACQUIRED


def test_the_final_commit_drops_a_served_request_from_the_sweep(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    now = lifecycle.clock[0]
    attempt = lifecycle.store.acquire_lease(sub_id, now, now + timedelta(minutes=2))
    assert attempt.lease is not None
    lifecycle.store.commit_final(attempt.lease, "token-1", now)
    doc = lifecycle.db.document(f"subscriptions/{sub_id}").get().to_dict()
    assert doc["requested_at"] is None and doc["last_synced_at"] is not None
    lifecycle.advance(minutes=5)
    assert lifecycle.renewer().run().subscription_reads == 0  # nothing for the sweep


def test_a_final_commit_with_a_newer_request_keeps_it_and_notes_the_follow_up(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    now = lifecycle.clock[0]
    attempt = lifecycle.store.acquire_lease(sub_id, now, now + timedelta(minutes=2))
    assert attempt.lease is not None
    lifecycle.store.record_sync_request(sub_id, now)  # arrives during the run
    final = lifecycle.store.commit_final(attempt.lease, "token-1", now)
    assert final.requested_gen == 2
    doc = lifecycle.db.document(f"subscriptions/{sub_id}").get().to_dict()
    assert doc["requested_at"] is not None and doc["queued_gen"] == 2

