"""Lifecycle events on the topic (DESIGN.md, "Accounts, lifecycle events,
watermark"), on the real Pub/Sub, Firestore and Calendar emulators: each one is an
entry of the subscription's feed, published through the same outbox, in seq order
with the event messages on the same ordering key, with its own CloudEvents type
and no event id; an unsubscribe finishes only once its `subscription_deleted`
message is out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.adapters.google.pubsub import PubSubPublisher
from functions.config import Settings
from functions.delivery.outbox import Outbox
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import CALENDAR_ADDED
from functions.sync.engine import Outcome, SyncEngine, SyncSettings
from tests.integration.lifecycle.conftest import RecordingQueue, ScriptedChannels

from .conftest import PROJECT, PubSubWorld, Received
from .test_outbox import KEY, World


@pytest.fixture
def world(firestore_db: Any, calendar: Any, pubsub: PubSubWorld) -> World:
    return World(firestore_db, calendar, pubsub)



def _settings(topic: str) -> Settings:
    return Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": PROJECT, "CALSYNC_REGION": "local",
        "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/", "CALSYNC_CHANNEL_TOKEN_KEYS": f"k:{KEY}",
        "CALSYNC_PUBSUB_TOPIC": topic})


class Lifecycle:
    """The world's subscription with the subscription service and an engine that
    finishes deletions, as `app.py` wires them."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.queue = RecordingQueue()
        self.service = SubscriptionService(
            _settings(world.pubsub.topic), SubscriptionStore(world.db, outbox=True),
            ScriptedChannels([world.h.clock()]), world.h.store, self.queue,
            clock=world.h.clock)

    def task(self) -> Any:
        world = self.world
        world.h.clock.advance(2.5)
        engine = SyncEngine(world.h.store, world.h.calendar, world.h.queue,
                            SyncSettings(page_size=5, lease_seconds=120, min_sync_interval=2),
                            clock=world.h.clock,
                            outbox=Outbox(world.h.store, world.publisher, PROJECT,
                                          limits=world.limits),
                            deletions=self.service)
        return engine.run(world.sub_id)


@pytest.fixture
def lifecycle(world: World) -> Lifecycle:
    return Lifecycle(world)


def _by_seq(messages: list[Received]) -> dict[int, Received]:
    return {m.seq: m for m in messages}


def _check_lifecycle(message: Received, world: World, kind: str, ce_type: str) -> dict[str, Any]:
    entry = json.loads(message.data)
    assert entry["kind"] == kind and entry["event_id"] is None
    assert message.ordering_key == world.sub_id
    assert message.attributes["ce-type"] == ce_type
    assert message.attributes["kind"] == kind
    assert message.attributes["ce-id"] == f"{world.sub_id}/{message.seq}"
    assert "event_id" not in message.attributes and "ce-subject" not in message.attributes
    assert message.attributes["label_team"] == "sales"
    return dict(entry["details"])


def test_reauthorization_required_is_published_by_the_run_that_failed(world: World) -> None:
    for i in range(3):
        world.h.insert(f"event {i}", day=i)
    assert world.sync().outcome is Outcome.SYNCED
    world.h.insert("unseen", day=9)
    world.h.emulator.control.inject_failure("events.list", 401, "authError")
    report = world.sync()
    assert report.outcome is Outcome.FAILED
    messages = world.pubsub.pull(4)
    assert [m.seq for m in messages] == [1, 2, 3, 4]  # in order with the events
    details = _check_lifecycle(messages[-1], world, "reauthorization_required",
                               "dev.calsync.subscription.reauthorization_required")
    assert details["reason"] == "reauthorization_required"
    assert world.state()["published_seq"] == 4


def test_resync_required_follows_the_full_listing_that_replaced_the_incremental_one(
        world: World) -> None:
    ids = [world.h.insert(f"event {i}", day=i)["id"] for i in range(6)]
    assert world.sync().outcome is Outcome.SYNCED
    world.h.delete(ids[0])
    world.h.emulator.control.inject_failure("events.list", 410, "fullSyncRequired")
    report = world.sync()
    assert report.outcome is Outcome.SYNCED and report.mode == "full_after_410"
    feed = world.h.check()
    assert [(e.kind, e.event_id) for e in feed[6:]] == [("deleted", ids[0]),
                                                          ("resync_required", None)]
    # Written by the final commit, after the run's publishing: a task publishes it.
    assert world.h.queue.tasks[-1][3] == "lifecycle"
    assert world.task().published >= 1
    messages = _by_seq(world.pubsub.pull(8))
    assert sorted(messages) == list(range(1, 9))
    assert _check_lifecycle(messages[8], world, "resync_required",
                            "dev.calsync.subscription.resync_required") == {
        "reason": "sync_token_expired"}
    assert world.state()["published_seq"] == 8


def test_account_events_get_the_account_types(world: World) -> None:
    world.h.insert("event", day=1)
    assert world.sync().outcome is Outcome.SYNCED
    seq = SubscriptionStore(world.db, outbox=True).record_event(
        world.sub_id, CALENDAR_ADDED, {"calendar_id": "team@example.com"}, world.h.clock())
    assert seq == 2
    assert world.task().published == 1
    messages = _by_seq(world.pubsub.pull(2))
    assert _check_lifecycle(messages[2], world, CALENDAR_ADDED,
                            "dev.calsync.account.calendar_added") == {
        "calendar_id": "team@example.com"}


def test_error_then_resume_publishes_recovered(world: World, lifecycle: Lifecycle) -> None:
    world.h.insert("event", day=1)
    assert world.sync().outcome is Outcome.SYNCED
    world.h.emulator.control.inject_failure("events.list", 401, "authError")
    assert world.sync().outcome is Outcome.FAILED
    assert lifecycle.service.resume(world.sub_id) is True
    assert lifecycle.service.resume(world.sub_id) is False  # a no-op says nothing more
    world.h.insert("after", day=2)
    assert lifecycle.task().outcome is Outcome.SYNCED
    messages = _by_seq(world.pubsub.pull(4))
    assert sorted(messages) == [1, 2, 3, 4]
    _check_lifecycle(messages[2], world, "reauthorization_required",
                     "dev.calsync.subscription.reauthorization_required")
    assert _check_lifecycle(messages[3], world, "recovered",
                            "dev.calsync.subscription.recovered") == {
        "reason": "reauthorization_required"}
    assert json.loads(messages[4].data)["kind"] == "created"


def test_an_unsubscribe_finishes_once_its_deleted_message_is_published(
        world: World, lifecycle: Lifecycle) -> None:
    for i in range(3):
        world.h.insert(f"event {i}", day=i)
    assert world.sync().outcome is Outcome.SYNCED
    assert lifecycle.service.unsubscribe(world.sub_id) is None  # waits for its message
    sub = world.db.document(f"subscriptions/{world.sub_id}").get()
    assert sub.exists and sub.to_dict()["status"] == "deleting"
    assert [t[2] for t in lifecycle.queue.tasks] == ["deleting"]
    # A resumed unsubscribe (the renewer's) writes no second entry and still waits.
    assert lifecycle.service.unsubscribe(world.sub_id) is None
    assert world.state()["change_seq"] == 4
    # The queued task publishes it, then finishes the deletion.
    report = lifecycle.task()
    assert report.outcome is Outcome.INACTIVE and report.published == 1
    messages = _by_seq(world.pubsub.pull(4))
    assert sorted(messages) == [1, 2, 3, 4]
    assert _check_lifecycle(messages[4], world, "subscription_deleted",
                            "dev.calsync.subscription.deleted") == {
        "calendar_id": "primary", "owner": "alice@example.com"}
    assert not world.db.document(f"subscriptions/{world.sub_id}").get().exists
    assert list(world.db.collection(f"subscriptions/{world.sub_id}/changes").stream()) == []


def test_an_unsubscribe_with_the_topic_unreachable_waits_then_gives_up(
        world: World, lifecycle: Lifecycle, unreachable_pubsub: str,
        pubsub: PubSubWorld) -> None:
    world.h.insert("event", day=1)
    assert world.sync().outcome is Outcome.SYNCED
    assert lifecycle.service.unsubscribe(world.sub_id) is None
    # Nothing is published: deleting stays deleting, the subscription stays.
    world.limits = type(world.limits)(timeout=0.5, max_messages=10)
    world.publisher = PubSubPublisher(PROJECT, world.pubsub.topic)  # the unreachable host
    lifecycle.task()
    assert world.db.document(f"subscriptions/{world.sub_id}").get().exists
    # Stuck longer than CALSYNC_DELETION_WAIT_SECONDS (a day): deleted anyway.
    world.h.clock.advance(86401)
    deleted = lifecycle.service.unsubscribe(world.sub_id)
    assert isinstance(deleted, int) and deleted > 0
    assert not world.db.document(f"subscriptions/{world.sub_id}").get().exists


def test_an_error_the_service_decides_is_published_by_the_task_it_queues(
        world: World, lifecycle: Lifecycle) -> None:
    """The renewer's path: a watch refused for good puts the subscription in error
    through the service, which queues a task; nothing else runs for a subscription
    in error, and that task publishes the entry."""
    world.h.insert("event", day=1)
    assert world.sync().outcome is Outcome.SYNCED
    sub = world.h.store.get_subscription(world.sub_id)
    assert lifecycle.service.mark_error(sub, "CalendarGone: 404", "calendar_not_found")
    assert not lifecycle.service.mark_error(sub, "again", "calendar_not_found")  # once
    assert [t[2] for t in lifecycle.queue.tasks] == ["lifecycle"]
    report = lifecycle.task()
    assert report.outcome is Outcome.INACTIVE and report.published == 1
    messages = _by_seq(world.pubsub.pull(2))
    assert _check_lifecycle(messages[2], world, "error", "dev.calsync.subscription.error") == {
        "reason": "calendar_not_found", "message": "CalendarGone: 404"}
