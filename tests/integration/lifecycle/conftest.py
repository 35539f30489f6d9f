"""Subscriptions and the renewer on the real Firestore emulator.

The Calendar side is a recording fake of our own `ChannelPort` here, so that
renewal order and failures can be scripted; the e2e tests run the same code
against the Calendar emulator.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.config import Settings
from functions.errors import CalendarError, QueueUnavailable
from functions.lifecycle.renewer import Renewer
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import Subscription
from functions.ports import ChannelPort, OpenedChannel, TaskQueue

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
KEY = base64.b64encode(b"r" * 32).decode()


class ScriptedChannels(ChannelPort):
    """`fail_next` fails the next watches in order, `refused` always fails the watches
    of a calendar, `in_flight` runs once inside the next watch (a pause, another
    renewer run, a crash)."""

    def __init__(self, clock: list[datetime]) -> None:
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self.fail_next: list[CalendarError] = []
        self.refused: dict[str, CalendarError] = {}
        self.in_flight: Callable[[], None] | None = None
        self.ttl = timedelta(days=7)

    def watch(self, subscription: Subscription, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        self.calls.append(("watch", channel_id))
        hook, self.in_flight = self.in_flight, None
        if hook is not None:
            hook()
        if subscription.calendar_id in self.refused:
            raise self.refused[subscription.calendar_id]
        if self.fail_next:
            raise self.fail_next.pop(0)
        return OpenedChannel(channel_id, f"res-{subscription.calendar_id}",
                             self.clock[0] + self.ttl)

    def stop(self, subscription: Subscription, channel_id: str, resource_id: str) -> None:
        self.calls.append(("stop", channel_id))

    def watched(self) -> list[str]:
        return [c for kind, c in self.calls if kind == "watch"]

    def stopped(self) -> list[str]:
        return [c for kind, c in self.calls if kind == "stop"]


class RecordingQueue(TaskQueue):
    """Records tasks; `refuse` makes the next enqueues fail as Cloud Tasks would."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, int, str]] = []
        self.refuse = 0

    def enqueue_sync(self, sub_id, generation, not_before=None, *, origin="request"):  # type: ignore[no-untyped-def]
        if self.refuse:
            self.refuse -= 1
            raise QueueUnavailable("queue refused (injected)")
        self.tasks.append((sub_id, generation, origin))


@dataclass
class Lifecycle:
    db: Any
    clock: list[datetime]
    calendar: ScriptedChannels
    queue: RecordingQueue
    subs: SubscriptionStore
    store: FirestoreStore
    service: SubscriptionService
    settings: Settings
    continued: list[str] = field(default_factory=list)

    def renewer(self, batch: int = 200) -> Renewer:
        return Renewer(self.settings, self.subs, self.service,
                       continue_later=lambda _at, name: self.continued.append(name),
                       batch=batch, clock=lambda: self.clock[0])

    def configure(self, **env: str) -> None:
        """Rebuild the settings and the service with these variables changed."""
        self.settings = Settings.from_env({**BASE_ENV, **env})
        self.service = SubscriptionService(self.settings, self.subs, self.calendar,
                                           self.store, self.queue, clock=lambda: self.clock[0])

    def doc(self, sub_id: str) -> dict[str, Any]:
        return self.db.document(f"subscriptions/{sub_id}").get().to_dict() or {}

    def writer(self, sub_id: str, **fields: Any) -> None:
        self.db.document(f"subscriptions/{sub_id}/state/writer").set(fields, merge=True)

    def subscribe(self, calendar_id: str, owner: str = "alice") -> str:
        """Subscribe as the CLI does; returns the new subscription's id."""
        result = self.service.subscribe(calendar_id, owner, "bearer")
        return result.subscription.id

    def subscribe_with_channel(self, calendar_id: str, owner: str = "alice") -> tuple[str, str]:
        """Subscribe, then open the channel as the first sync run does: (sub id, channel id)."""
        sub_id = self.subscribe(calendar_id, owner)
        sub = self.store.get_subscription(sub_id)
        assert sub is not None and self.service.ensure_channel(sub)
        return sub_id, self.delivering(sub_id)[0]

    def delivering(self, sub_id: str) -> list[str]:
        return [c.id for c in self.subs.delivering_channels(sub_id)]

    def served(self, sub_id: str) -> None:
        """As if a run had served every request so far."""
        data = self.db.document(f"subscriptions/{sub_id}").get().to_dict()
        self.db.document(f"subscriptions/{sub_id}/state/writer").set(
            {"synced_gen": data["requested_gen"], "claimed_gen": data["requested_gen"],
             "sync_token": "t"}, merge=True)
        served: dict[str, Any] = {"requested_at": None, "last_synced_at": self.clock[0]}
        if "sweep_at" in data:  # what the final commit does to the renewer's sort keys
            served["sweep_at"] = None
        if "safety_net_at" in data:
            served["safety_net_at"] = self.clock[0]
        self.subs.update(sub_id, served)

    def advance(self, **delta: float) -> None:
        self.clock[0] += timedelta(**delta)

    def channel_states(self, sub_id: str) -> dict[str, str]:
        return {c.id: c.state for c in self.subs.channels_of(sub_id)}


BASE_ENV = {
    "GOOGLE_CLOUD_PROJECT": "calsync-test", "CALSYNC_REGION": "local",
    "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
    "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/", "CALSYNC_CHANNEL_TOKEN_KEYS": f"k:{KEY}",
    "CALSYNC_RENEWAL_WINDOW_SECONDS": "86400", "CALSYNC_SWEEP_AFTER_SECONDS": "120",
    "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": "3600",
    "CALSYNC_RENEWAL_BACKOFF_SECONDS": "60", "CALSYNC_PENDING_CHANNEL_GRACE_SECONDS": "120",
}


@pytest.fixture
def lifecycle(firestore_db: Any) -> Lifecycle:
    clock = [T0]
    settings = Settings.from_env(BASE_ENV)
    calendar, queue = ScriptedChannels(clock), RecordingQueue()
    subs, store = SubscriptionStore(firestore_db), FirestoreStore(firestore_db)
    service = SubscriptionService(settings, subs, calendar, store, queue,
                                  clock=lambda: clock[0])
    return Lifecycle(firestore_db, clock, calendar, queue, subs, store, service, settings)
