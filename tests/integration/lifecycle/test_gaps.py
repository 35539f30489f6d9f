"""Issue 21, item 6 on the emulators: a request whose enqueue crashed is re-queued by
the next caller with no extra write, a queue outage costs bounded writes on the
subscription document, one store error does not end a renewer run, pagination
cursors are the values read (no restart, no skip), and an interrupted unsubscribe is
finished by the renewer."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.google.tasks import CloudTasksQueue, task_id
from functions.errors import QueueUnavailable, StoreUnavailable
from functions.intake import channel_tokens
from functions.intake.webhook import Notification, WebhookService
from functions.model import Channel, Subscription, SyncRequest
from tests.integration.lifecycle.conftest import Lifecycle
from tests.receiver import Receiver

KEYS = {"k": base64.b64decode(base64.b64encode(b"r" * 32))}


class CountingStore(FirestoreStore):
    """Counts the request-store calls that wrote the subscription document (each
    writes it at most once: its update time tells)."""

    writes = 0

    def _counted(self, sub_id: str, call: Any) -> Any:
        ref = self._client.collection("subscriptions").document(sub_id)
        before = ref.get().update_time
        result = call()
        self.writes += int(ref.get().update_time != before)
        return result

    def record_sync_request(self, sub_id: str, now: datetime) -> SyncRequest:
        return self._counted(sub_id, lambda: super(CountingStore, self).record_sync_request(
            sub_id, now))

    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        self._counted(sub_id, lambda: super(CountingStore, self).mark_queued(
            sub_id, generation, now))

    def enqueue_failed(self, sub_id: str, generation: int) -> None:
        self._counted(sub_id, lambda: super(CountingStore, self).enqueue_failed(
            sub_id, generation))


@pytest.fixture
def worker() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def _webhook(lifecycle: Lifecycle, queue: Any, sub_id: str) -> tuple[WebhookService,
                                                                     CountingStore]:
    channels = FirestoreChannelStore(lifecycle.db)
    channels.save_channel(Channel("ch-1", sub_id, "active", resource_id="res-1",
                                  expiration=lifecycle.clock[0] + timedelta(days=1)),
                          lifecycle.clock[0])
    store = CountingStore(lifecycle.db)
    return WebhookService(channels, store, queue, KEYS, record_interval=3600.0,
                          clock=lambda: lifecycle.clock[0]), store


def _note(number: int) -> Notification:
    return Notification("ch-1", "res-1", "exists", number, channel_tokens.sign("ch-1", KEYS))


def test_a_request_whose_enqueue_crashed_is_requeued_by_the_next_notification_cheaply(
    lifecycle: Lifecycle, tasks_emulator: str, tasks_queue: str, worker: Receiver,
) -> None:
    lifecycle.configure(CALSYNC_WORKER_URL=worker.url, CLOUD_TASKS_EMULATOR_HOST=tasks_emulator)
    queue = CloudTasksQueue(lifecycle.settings, queue_path=tasks_queue)
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    webhook, store = _webhook(lifecycle, queue, sub_id)
    store.record_sync_request(sub_id, lifecycle.clock[0])  # then the instance died
    lifecycle.advance(seconds=16)
    writes = store.writes
    outcome = webhook.handle(_note(7))
    assert outcome.result == "queued"
    assert store.writes - writes <= 1, store.writes - writes  # the queued note only
    [(_, headers, body)] = worker.wait_for(1)
    assert json.loads(body) == {"subscription_id": sub_id}
    assert headers["x-cloudtasks-taskname"] == task_id(sub_id, "request", 2)


def test_a_repeated_subscribe_requeues_a_first_sync_whose_enqueue_crashed(
    lifecycle: Lifecycle,
) -> None:
    sub = Subscription(id="s-1", calendar_id="cal-a", owner="alice", credentials_ref="bearer")
    lifecycle.subs.create_or_get(sub, lifecycle.clock[0])  # then the API instance died
    lifecycle.advance(seconds=20)
    again = lifecycle.service.subscribe("cal-a", "alice", "bearer")
    assert not again.created and again.queued
    assert lifecycle.queue.tasks == [("s-1", 1, "request")]
    assert lifecycle.doc("s-1")["queued_gen"] == 1


class DownQueue:
    def __init__(self) -> None:
        self.down = True
        self.tasks: list[tuple[str, int, str]] = []

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        if self.down:
            raise QueueUnavailable("cloud tasks unavailable (injected)")
        self.tasks.append((sub_id, generation, origin))


def test_a_queue_outage_costs_bounded_writes_not_two_per_notification(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    queue = DownQueue()
    webhook, store = _webhook(lifecycle, queue, sub_id)
    before = lifecycle.db.document(f"subscriptions/{sub_id}").get().update_time
    for n in range(12):
        lifecycle.advance(seconds=0.5)
        assert webhook.handle(_note(n + 2)).status == 503
    assert store.writes <= 3, store.writes
    assert lifecycle.db.document(f"subscriptions/{sub_id}").get().update_time != before
    queue.down = False
    assert webhook.handle(_note(50)).result == "queued"
    assert queue.tasks == [(sub_id, 2, "request")]


def test_one_store_error_in_a_channel_action_does_not_end_the_run(lifecycle: Lifecycle) -> None:
    served, broken = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.served(served)
    stranded = lifecycle.subscribe("cal-b")
    lifecycle.queue.tasks.clear()  # its task was lost
    lifecycle.advance(days=6, hours=12)
    claim = lifecycle.subs.claim_channel

    def failing(channel_id: str, *args: Any, **kwargs: Any) -> bool:
        if channel_id == broken:
            raise StoreUnavailable("firestore unavailable: 503 (injected)")
        return claim(channel_id, *args, **kwargs)

    lifecycle.subs.claim_channel = failing  # type: ignore[method-assign]
    report = lifecycle.renewer().run()
    assert any("StoreUnavailable" in error for error in report.errors)
    assert report.swept == 1
    assert [o for s, _, o in lifecycle.queue.tasks if s == stranded][0].startswith("sweep")


def test_the_sweep_never_reads_a_row_twice_in_one_run(lifecycle: Lifecycle) -> None:
    ids = []
    for n in range(6):
        ids.append(lifecycle.subscribe(f"cal-{n}"))
        lifecycle.advance(seconds=1)
    for held in ids[0::2]:
        lifecycle.writer(held, claimed_gen=0, lease_until=lifecycle.clock[0] + timedelta(hours=1))
    for served in ids[1::2]:  # served, the marker left behind
        lifecycle.writer(served, synced_gen=1, claimed_gen=1)
    lifecycle.advance(minutes=5)
    seen: list[str] = []
    query = lifecycle.subs.subscriptions_where

    def recording(*args: Any, **kwargs: Any) -> Any:
        rows = query(*args, **kwargs)
        if args and args[0] in ("requested_at", "sweep_at"):
            seen.extend(sub.id for sub, _ in rows)
        return rows

    lifecycle.subs.subscriptions_where = recording  # type: ignore[method-assign]
    lifecycle.renewer(batch=2).run()
    assert sorted(seen) == sorted(ids)


def test_an_interrupted_unsubscribe_is_finished_by_the_renewer(lifecycle: Lifecycle) -> None:
    sub_id, channel_id = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.subs.begin_delete(sub_id, lifecycle.clock[0])  # the DELETE died after fencing
    lifecycle.advance(seconds=30)
    lifecycle.renewer().run()  # within its grace: an unsubscribe may still be running
    assert lifecycle.doc(sub_id)["status"] == "deleting"
    lifecycle.advance(minutes=3)
    lifecycle.renewer().run()
    assert not lifecycle.db.document(f"subscriptions/{sub_id}").get().exists
    assert list(lifecycle.db.collection("channels").stream()) == []
    assert list(lifecycle.db.collection("subscription_keys").stream()) == []
    assert channel_id in lifecycle.calendar.stopped()
