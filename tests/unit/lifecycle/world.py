"""A scripted world for the lifecycle rules over the in-memory fakes: a clock, the
fake store, a Calendar side whose watches can fail per calendar (or run a hook
while in flight), and a recording task queue."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.google.tasks import task_id
from functions.config import Settings
from functions.errors import CalendarError, CalendarUnavailable, QueueUnavailable
from functions.lifecycle.renewer import Renewer
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import Subscription
from functions.ports import ChannelPort, OpenedChannel, TaskQueue
from tests.unit.lifecycle.fakes import MemoryLifecycle

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

BASE_ENV = {
    "GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "r", "CALSYNC_TASKS_QUEUE": "q",
    "CALSYNC_WORKER_URL": "http://127.0.0.1:1/", "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
    "CALSYNC_CHANNEL_TOKEN_KEYS": "k:" + base64.b64encode(b"k" * 32).decode(),
    "CALSYNC_SWEEP_AFTER_SECONDS": "120", "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": "3600",
    "CALSYNC_RENEWAL_BACKOFF_SECONDS": "60", "CALSYNC_PENDING_CHANNEL_GRACE_SECONDS": "120",
    "CALSYNC_RENEWAL_WINDOW_SECONDS": "86400",
}


class Watches(ChannelPort):
    """events.watch / channels.stop: `refused` calendars always fail with their error,
    `failures` fails the next N watches, `in_flight` runs once inside the next watch."""

    def __init__(self, clock: list[datetime]) -> None:
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self.refused: dict[str, CalendarError] = {}
        self.failures = 0
        self.in_flight: Callable[[], None] | None = None
        self.ttl = timedelta(days=7)

    def watch(self, subscription: Subscription, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        self.calls.append(("watch", channel_id))
        hook, self.in_flight = self.in_flight, None
        if hook is not None:
            hook()
        refused = self.refused.get(subscription.calendar_id)
        if refused is not None:
            raise refused
        if self.failures:
            self.failures -= 1
            raise CalendarUnavailable("watch 503")
        return OpenedChannel(channel_id, f"res-{subscription.calendar_id}",
                             self.clock[0] + self.ttl)

    def stop(self, subscription: Subscription, channel_id: str, resource_id: str) -> None:
        self.calls.append(("stop", channel_id))

    def watched(self) -> list[str]:
        return [c for kind, c in self.calls if kind == "watch"]

    def stopped(self) -> list[str]:
        return [c for kind, c in self.calls if kind == "stop"]


class Queue(TaskQueue):
    def __init__(self) -> None:
        self.tasks: list[tuple[str, int, str]] = []
        self.refuse = 0

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        if self.refuse:
            self.refuse -= 1
            raise QueueUnavailable("refused")
        self.tasks.append((sub_id, generation, origin))

    def of(self, sub_id: str) -> list[tuple[int, str]]:
        return [(g, o) for s, g, o in self.tasks if s == sub_id]


class NamedQueue(Queue):
    """Cloud Tasks' name rule: a task name used before (within about an hour) is
    refused with AlreadyExists, which `CloudTasksQueue` returns from quietly."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.refused: list[str] = []

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        name = task_id(sub_id, origin, generation)
        if name in self.names:
            self.refused.append(name)
            return
        super().enqueue_sync(sub_id, generation, not_before, origin=origin)
        self.names.add(name)


class World:
    def __init__(self, queue: Queue | None = None, **env: str) -> None:
        self.clock = [T0]
        self.db = MemoryLifecycle()
        self.watches = Watches(self.clock)
        self.queue = queue if queue is not None else Queue()
        self.settings = Settings.from_env({**BASE_ENV, **env})
        self.service = SubscriptionService(self.settings, self.db, self.watches, self.db,
                                           self.queue, clock=lambda: self.clock[0])
        self.continued: list[str] = []

    def renewer(self, batch: int = 10) -> Renewer:
        return Renewer(self.settings, self.db, self.service,
                       continue_later=lambda _at, name: self.continued.append(name),
                       batch=batch, clock=lambda: self.clock[0])

    def advance(self, **delta: float) -> None:
        self.clock[0] += timedelta(**delta)

    def subscribe(self, calendar_id: str, owner: str = "o") -> str:
        return self.service.subscribe(calendar_id, owner, "bearer").subscription.id

    def sub(self, sub_id: str) -> Subscription:
        found = self.db.get(sub_id)
        assert found is not None
        return found[0]

    def served(self, sub_id: str) -> None:
        """As if a run had served every request so far (its final commit)."""
        gen = self.db.subs[sub_id]["requested_gen"]
        self.db.writers[sub_id] = {**self.db.writers.get(sub_id, {}),
                                   "synced_gen": gen, "claimed_gen": gen, "sync_token": "t"}
        self.db.subs[sub_id].update(requested_at=None, last_synced_at=self.clock[0])
        if "sweep_at" in self.db.subs[sub_id]:
            self.db.subs[sub_id]["sweep_at"] = None
        if "safety_net_at" in self.db.subs[sub_id]:
            self.db.subs[sub_id]["safety_net_at"] = self.clock[0]

    def with_channel(self, calendar_id: str) -> tuple[str, str]:
        """Subscribe, serve and open the channel as the first run does."""
        sub_id = self.subscribe(calendar_id)
        self.served(sub_id)
        assert self.service.ensure_channel(self.sub(sub_id))
        return sub_id, self.delivering(sub_id)[0]

    def delivering(self, sub_id: str) -> list[str]:
        return [c.id for c in self.db.delivering_channels(sub_id)]

    def states(self, sub_id: str) -> dict[str, str]:
        return {c.id: c.state for c in self.db.channels_of(sub_id)}

    def stuck(self, sub_id: str, **writer: Any) -> None:
        """A request recorded and its task queued, but every run of it fails."""
        self.db.subs[sub_id]["queued_gen"] = self.db.subs[sub_id]["requested_gen"]
        self.db.writers[sub_id] = {**self.db.writers.get(sub_id, {}), **writer}
