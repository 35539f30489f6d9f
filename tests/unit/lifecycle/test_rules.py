"""The liveness rules over in-memory fakes of the lifecycle ports (fast; the
emulator tests in tests/integration/lifecycle check the same rules on Firestore)."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.config import Settings
from functions.errors import CalendarUnavailable, InvalidTransition, QueueUnavailable
from functions.lifecycle.renewer import Renewer, unsharded_budget
from functions.lifecycle.subscriptions import SubscriptionService, backoff
from functions.model import Subscription
from functions.ports import CallBudget, ChannelPort, OpenedChannel, TaskQueue
from tests.unit.lifecycle.fakes import MemoryLifecycle

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Watches(ChannelPort):
    def __init__(self, clock: list[datetime]) -> None:
        self.clock, self.failures, self.calls = clock, 0, []  # type: ignore[var-annotated]

    def watch(self, subscription: Subscription, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        self.calls.append(("watch", channel_id))
        if self.failures:
            self.failures -= 1
            raise CalendarUnavailable("watch 503")
        return OpenedChannel(channel_id, "res", self.clock[0] + timedelta(days=7))

    def stop(self, subscription: Subscription, channel_id: str, resource_id: str) -> None:
        self.calls.append(("stop", channel_id))


class Queue(TaskQueue):
    def __init__(self) -> None:
        self.tasks: list[tuple[str, int, str]] = []
        self.refuse = 0

    def enqueue_sync(self, sub_id, generation, not_before=None, *, origin="request"):  # type: ignore[no-untyped-def]
        if self.refuse:
            self.refuse -= 1
            raise QueueUnavailable("refused")
        self.tasks.append((sub_id, generation, origin))


class World:
    def __init__(self) -> None:
        self.clock = [T0]
        self.db = MemoryLifecycle()
        self.watches = Watches(self.clock)
        self.queue = Queue()
        self.settings = Settings.from_env({
            "GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "r", "CALSYNC_TASKS_QUEUE": "q",
            "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
            "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
            "CALSYNC_CHANNEL_TOKEN_KEYS": "k:" + base64.b64encode(b"k" * 32).decode(),
            "CALSYNC_SWEEP_AFTER_SECONDS": "120", "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": "3600",
        })
        self.service = SubscriptionService(self.settings, self.db, self.watches, self.db,
                                           self.queue, clock=lambda: self.clock[0])
        self.continued: list[str] = []

    def renewer(self, batch: int = 10) -> Renewer:
        return Renewer(self.settings, self.db, self.service,
                       continue_later=lambda _at, name: self.continued.append(name),
                       batch=batch, clock=lambda: self.clock[0])

    def served(self, sub_id: str) -> None:
        gen = self.db.subs[sub_id]["requested_gen"]
        self.db.writers[sub_id] = {"synced_gen": gen, "claimed_gen": gen}
        self.db.subs[sub_id].update(requested_at=None, last_synced_at=self.clock[0])


@pytest.fixture
def world() -> World:
    return World()


def test_every_transition_is_conditional(world: World) -> None:
    sub_id = world.service.subscribe("c", "o", "bearer").subscription.id
    assert world.service.pause(sub_id) and not world.service.pause(sub_id)
    assert world.service.resume(sub_id) and not world.service.resume(sub_id)
    world.db.begin_delete(sub_id, T0)
    for action in (world.service.pause, world.service.resume):
        with pytest.raises(InvalidTransition):
            action(sub_id)
    with pytest.raises(InvalidTransition):
        world.service.subscribe("c", "o", "bearer")


def test_resume_always_leaves_a_task_or_a_request_the_sweep_finds(world: World) -> None:
    sub_id = world.service.subscribe("c", "o", "bearer").subscription.id
    world.served(sub_id)
    world.service.pause(sub_id)
    world.queue.tasks.clear()
    world.queue.refuse = 1
    world.service.resume(sub_id)
    assert world.queue.tasks == []
    world.clock[0] += timedelta(minutes=3)
    assert world.renewer().run().swept == 1 and world.queue.tasks[0][:2] == (sub_id, 2)


def test_a_failed_first_watch_is_retried_with_a_doubling_backoff(world: World) -> None:
    sub_id = world.service.subscribe("c", "o", "bearer").subscription.id
    world.served(sub_id)
    world.watches.failures = 3
    sub = world.db.get(sub_id)[0]  # type: ignore[index]
    assert not world.service.ensure_channel(sub)
    waits = []
    for _ in range(4):
        [doc] = [d for d in world.db.channels.values() if d["state"] == "pending"]
        waits.append(doc["next_attempt_at"] - world.clock[0])
        world.clock[0] = doc["next_attempt_at"] + timedelta(seconds=1)
        world.renewer().run()
        if world.db.delivering_channels(sub_id)[0].state == "active":
            break
    first = timedelta(seconds=60)
    assert waits == [backoff(1, first), backoff(2, first), backoff(3, first)] == [
        first, 2 * first, 4 * first]
    assert [c.state for c in world.db.delivering_channels(sub_id)] == ["active"]


def test_exactly_one_delivering_channel_after_any_renewer_run(world: World) -> None:
    ids = [world.service.subscribe(f"c{n}", "o", "bearer").subscription.id for n in range(5)]
    for sub_id in ids:
        world.served(sub_id)
        world.service.ensure_channel(world.db.get(sub_id)[0])  # type: ignore[index]
    world.clock[0] += timedelta(days=6, hours=12)
    world.watches.failures = 2
    for _ in range(6):
        world.renewer(batch=2).run()
        world.clock[0] += timedelta(minutes=10)
    for sub_id in ids:
        assert len(world.db.delivering_channels(sub_id)) == 1


class ShortBudget(CallBudget):
    """An owner's budget that is short for the first `short` takes."""

    def __init__(self, short: int) -> None:
        self.short = short

    def take(self, owner: str, subscription: str, calls: int, now: datetime, *,
             booked: datetime | None = None, book: bool = True) -> datetime | None:
        if self.short:
            self.short -= 1
            return now + timedelta(minutes=1)
        return None


def test_a_renewal_over_the_owners_budget_gives_its_claim_back(world: World) -> None:
    sub_id = world.service.subscribe("c", "o", "bearer").subscription.id
    world.served(sub_id)
    world.service.ensure_channel(world.db.get(sub_id)[0])  # type: ignore[index]
    [old] = world.db.delivering_channels(sub_id)
    world.clock[0] += timedelta(days=6, hours=12)  # inside the renewal window
    budget = ShortBudget(short=1)

    def tick() -> Any:
        return Renewer(world.settings, world.db, world.service, batch=10,
                       clock=lambda: world.clock[0], budget=budget).run()

    assert tick().over_budget == 1
    # Nothing renewed, and no claim left: the very next run may renew it (a claim
    # left to lapse would hold it for CALSYNC_CHANNEL_CLAIM_SECONDS).
    assert [c.id for c in world.db.delivering_channels(sub_id)] == [old.id]
    assert world.db.channels[old.id].get("claimed_until") is None
    world.clock[0] += timedelta(seconds=1)
    assert tick().renewed == 1
    [new] = world.db.delivering_channels(sub_id)
    assert new.id != old.id and new.state == "active"


@pytest.mark.parametrize("short", [0, 1])
def test_an_orphan_channel_is_stopped_within_the_owners_budget(world: World,
                                                                short: int) -> None:
    sub_id = world.service.subscribe("c", "o", "bearer").subscription.id
    world.served(sub_id)
    world.service.ensure_channel(world.db.get(sub_id)[0])  # type: ignore[index]
    [channel] = world.db.delivering_channels(sub_id)
    world.db.subs[sub_id]["status"] = "paused"  # its channel outlived the pause's stop
    world.clock[0] += timedelta(days=6, hours=12)
    report = Renewer(world.settings, world.db, world.service, batch=10,
                     clock=lambda: world.clock[0], budget=ShortBudget(short)).run()
    stops = [c for c in world.watches.calls if c[0] == "stop"]
    if short:  # no call over the budget: left to expire at Google, refused meanwhile
        assert stops == [] and report.over_budget == 1
        assert world.db.channels[channel.id]["state"] == "abandoned"
    else:
        assert stops == [("stop", channel.id)] and report.orphans_stopped == 1
    assert world.db.delivering_channels(sub_id) == []


def test_continuation_only_with_progress(world: World) -> None:
    for n in range(3):
        sub_id = world.service.subscribe(f"c{n}", "o", "bearer").subscription.id
        world.db.writers[sub_id] = {"lease_until": T0 + timedelta(days=1)}  # runs hold them
    world.clock[0] += timedelta(minutes=5)
    report = world.renewer(batch=2).run()
    assert not report.continued and world.continued == []


def test_a_run_without_fan_out_starts_at_most_its_share_of_the_renewals_per_minute(
        world: World) -> None:
    """Seven runs fit in a minute (six continuations and the tick): each starts at most
    a seventh of CALSYNC_RENEWALS_PER_MINUTE watches, whatever its batch (its batch of
    200 alone let renewals take 1,200 a minute against 1,000 set aside)."""
    settings = dataclasses.replace(world.settings, renewals_per_minute=70)
    assert unsharded_budget(settings) == 10
    for n in range(30):
        sub_id = world.service.subscribe(f"c{n}", "o", "bearer").subscription.id
        world.served(sub_id)
        world.service.ensure_channel(world.db.get(sub_id)[0])  # type: ignore[index]
    world.clock[0] += timedelta(days=6, hours=12)  # every channel inside the window
    renewer = Renewer(settings, world.db, world.service, batch=200,
                      clock=lambda: world.clock[0],
                      continue_later=lambda at, name: world.continued.append(name))
    renewed = []
    for _ in range(3):
        report = renewer.run()
        renewed.append(report.renewed)
        world.clock[0] += timedelta(seconds=10)
    assert renewed == [10, 10, 10] and world.continued  # all of them, ten a run
