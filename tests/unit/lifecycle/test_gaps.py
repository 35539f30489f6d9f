"""Issue 21, item 6: a request left without its task is re-queued cheaply by the next
caller, an outage of the queue costs bounded writes, one store error does not end a
renewer run, the renewer's pagination neither restarts nor skips, and an
interrupted unsubscribe is finished by the renewer."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from functions.errors import StoreUnavailable
from functions.intake import channel_tokens
from functions.intake.webhook import Notification, WebhookService
from functions.model import Channel, Subscription
from functions.ports import ChannelStore
from tests.unit.lifecycle.fakes import MemoryLifecycle
from tests.unit.lifecycle.world import World

KEYS = {"k": b"k" * 32}


class CountingStore(MemoryLifecycle):
    """Counts the request-store calls that changed the subscription document."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def _counted(self, sub_id: str, call: Any) -> Any:
        before = copy.deepcopy(self.subs.get(sub_id))
        result = call()
        self.writes += int(self.subs.get(sub_id) != before)
        return result

    def record_sync_request(self, sub_id: str, now: datetime) -> Any:
        return self._counted(sub_id, lambda: super(CountingStore, self).record_sync_request(
            sub_id, now))

    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        self._counted(sub_id, lambda: super(CountingStore, self).mark_queued(
            sub_id, generation, now))

    def enqueue_failed(self, sub_id: str, generation: int) -> None:
        self._counted(sub_id, lambda: super(CountingStore, self).enqueue_failed(
            sub_id, generation))


class OneChannel(ChannelStore):
    def __init__(self, sub_id: str) -> None:
        self.channel = Channel("ch-1", sub_id, "active", resource_id="res-1")

    def get_channel(self, channel_id: str) -> Channel | None:
        return self.channel if channel_id == "ch-1" else None

    def learn_resource_id(self, channel_id: str, resource_id: str) -> None:
        raise AssertionError("known already")

    def record_notification(self, channel: Channel, message_number: int,
                            now: datetime) -> datetime | None:
        return None


def _webhook_world() -> tuple[World, CountingStore, str, WebhookService]:
    world = World()
    store = CountingStore()
    world.db = store
    world.service = type(world.service)(world.settings, store, world.watches, store,
                                        world.queue, clock=lambda: world.clock[0])
    sub_id = world.subscribe("cal")
    world.served(sub_id)
    webhook = WebhookService(OneChannel(sub_id), store, world.queue, KEYS, record_interval=5,
                             clock=lambda: world.clock[0])
    return world, store, sub_id, webhook


def _note(number: int) -> Notification:
    return Notification("ch-1", "res-1", "exists", number, channel_tokens.sign("ch-1", KEYS))


def test_a_request_whose_enqueue_crashed_is_requeued_by_the_next_notification_cheaply(
) -> None:
    world, store, sub_id, webhook = _webhook_world()
    store.record_sync_request(sub_id, world.clock[0])  # then the instance died
    world.queue.tasks.clear()
    world.advance(seconds=16)
    writes = store.writes
    outcome = webhook.handle(_note(5))
    assert outcome.result == "queued" and world.queue.of(sub_id) == [(2, "request")]
    assert store.writes - writes <= 1  # the queued note only


def test_a_repeated_subscribe_requeues_a_first_sync_whose_enqueue_crashed() -> None:
    world = World()
    sub = Subscription(id="s-1", calendar_id="cal", owner="o", credentials_ref="bearer")
    world.db.create_or_get(sub, world.clock[0])  # then the API instance died
    world.advance(seconds=20)
    again = world.service.subscribe("cal", "o", "bearer")  # the client retries
    assert not again.created and again.queued
    assert world.queue.of("s-1") == [(1, "request")]
    assert not world.service.subscribe("cal", "o", "bearer").queued  # known queued now


def test_a_queue_outage_costs_bounded_writes_not_two_per_notification() -> None:
    world, store, sub_id, webhook = _webhook_world()
    world.queue.refuse = 1000
    writes = store.writes
    for n in range(20):
        world.advance(seconds=0.5)
        assert webhook.handle(_note(n + 2)).status == 503  # Google redelivers each
    assert store.writes - writes <= 3, store.writes - writes
    world.queue.refuse = 0
    assert webhook.handle(_note(99)).result == "queued"
    assert world.queue.of(sub_id)[-1] == (2, "request")


def test_one_store_error_in_a_channel_action_does_not_end_the_run() -> None:
    world = World()
    _, broken = world.with_channel("cal-a")
    stranded = world.subscribe("cal-b")  # its task was lost
    world.advance(days=6, hours=12)
    claim = world.db.claim_channel

    def failing(channel_id: str, *args: Any, **kwargs: Any) -> bool:
        if channel_id == broken:
            raise StoreUnavailable("firestore unavailable: 503")
        return claim(channel_id, *args, **kwargs)

    world.db.claim_channel = failing  # type: ignore[method-assign]
    report = world.renewer().run()
    assert any("StoreUnavailable" in e for e in report.errors)
    assert report.swept == 1 and [o for _, o in world.queue.of(stranded)][-1].startswith(
        "sweep")


def test_the_sweep_never_reads_a_row_twice_in_one_run() -> None:
    world = World()
    ids = []
    for n in range(6):
        sub_id = world.subscribe(f"cal-{n}")
        world.advance(seconds=1)
        ids.append(sub_id)
    for held in ids[0::2]:  # runs hold these
        world.stuck(held, claimed_gen=0, lease_until=world.clock[0] + timedelta(hours=1))
    for served in ids[1::2]:  # these were served, their markers left behind
        world.db.writers[served] = {"synced_gen": 1, "claimed_gen": 1}
    world.advance(minutes=5)
    seen: list[str] = []
    query = world.db.subscriptions_where

    def recording(*args: Any, **kwargs: Any) -> Any:
        rows = query(*args, **kwargs)
        if args and args[0] in ("requested_at", "sweep_at"):
            seen.extend(sub.id for sub, _ in rows)
        return rows

    world.db.subscriptions_where = recording  # type: ignore[method-assign]
    world.renewer(batch=2).run()
    assert sorted(seen) == sorted(ids)  # each row read once: no restart, no skip


def test_an_interrupted_unsubscribe_is_finished_by_the_renewer() -> None:
    world = World()
    sub_id, channel_id = world.with_channel("cal")
    world.db.begin_delete(sub_id, world.clock[0])  # the unsubscribe died right after fencing
    world.advance(seconds=30)
    world.renewer().run()  # still within its grace: an unsubscribe may be in flight
    assert world.db.get(sub_id) is not None
    world.advance(minutes=3)
    world.renewer().run()
    assert world.db.get(sub_id) is None and world.db.channels_of(sub_id) == []
    assert channel_id in world.watches.stopped()
