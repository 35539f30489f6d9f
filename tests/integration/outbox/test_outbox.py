"""Every committed entry reaches Pub/Sub at least once, in seq order per
subscription, and publishing never changes what a sync does (DESIGN.md,
"Delivery (outbox)"): the real Pub/Sub, Firestore and Calendar emulators."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from functions.adapters.firestore import codec
from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.adapters.google.pubsub import PubSubPublisher
from functions.config import Settings
from functions.delivery.outbox import Outbox, OutboxSweeper, PublishLimits
from functions.errors import LeaseLost
from functions.lifecycle.renewer import Renewer
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import entry_json, rfc3339
from functions.ports import PublishProgress
from functions.sync.engine import Outcome, SyncEngine, SyncReport, SyncSettings
from tests.integration.lifecycle.conftest import RecordingQueue, ScriptedChannels
from tests.integration.sync.harness import Crash, CrashingStore, Harness

from .conftest import PROJECT, PubSubWorld, Received

KEY = base64.b64encode(b"o" * 32).decode()


class World:
    """A subscription synced through the real adapters with publishing on."""

    def __init__(self, db: Any, calendar: Any, pubsub: PubSubWorld, timeout: float = 10.0,
                 max_message_bytes: int | None = None, max_messages: int = 1000) -> None:
        self.h = Harness(db, calendar, "alice@example.com")
        self.h.store = OutboxFirestoreStore(db)
        self.db, self.pubsub, self.timeout = db, pubsub, timeout
        self.limits = PublishLimits(timeout=timeout, max_messages=max_messages)
        options = {} if max_message_bytes is None else {"max_message_bytes": max_message_bytes}
        self.publisher = PubSubPublisher(PROJECT, pubsub.topic, **options)
        self.sub_id = self.h.sub.id
        db.document(f"subscriptions/{self.sub_id}").update({"labels": {"team": "sales"}})

    def engine(self, store: FirestoreStore | None = None, publish: bool = True) -> SyncEngine:
        store = store or self.h.store
        with_outbox = (Outbox(self.h.store, self.publisher, PROJECT, limits=self.limits)
                       if publish else None)
        return SyncEngine(store, self.h.calendar, self.h.queue,
                          SyncSettings(page_size=5, lease_seconds=120, min_sync_interval=2),
                          clock=self.h.clock, outbox=with_outbox)

    def sync(self, store: FirestoreStore | None = None, publish: bool = True) -> SyncReport:
        self.h.request()
        return self.engine(store, publish).run(self.sub_id)

    def task(self, store: FirestoreStore | None = None) -> SyncReport:
        """A task with no new request (a sweep's, a duplicate's)."""
        self.h.clock.advance(2.5)
        return self.engine(store).run(self.sub_id)

    def state(self) -> dict[str, Any]:
        return self.h.store.get_writer_state(self.sub_id)

    def crashing(self, after_calls: int = 1) -> FirestoreStore:
        """The real store raising right after its n-th page commit: the run dies
        between commit and publish."""
        store = CrashingStore(self.db, "commit_page", after_calls)
        store._outbox = True
        return store


@pytest.fixture
def world(firestore_db: Any, calendar: Any, pubsub: PubSubWorld) -> World:
    return World(firestore_db, calendar, pubsub)


def _seqs(messages: list[Received]) -> list[int]:
    return [m.seq for m in messages]


def _first_copies(messages: list[Received]) -> list[int]:
    """Seqs in order of first arrival (at-least-once: duplicates are allowed)."""
    seen: list[int] = []
    for message in messages:
        if message.seq not in seen:
            seen.append(message.seq)
    return seen


def test_every_entry_is_published_once_in_seq_order_with_cloudevents_attributes(
        world: World) -> None:
    ids = [world.h.insert(f"event {i}", day=i)["id"] for i in range(12)]
    first = world.sync()
    assert first.outcome is Outcome.SYNCED and first.published == 12
    assert first.log_fields()["published"] == 12
    # The second run's messages carry the watermark its lease read: the first run's.
    watermark = rfc3339(world.state()["complete_as_of"])
    world.h.patch(ids[0], summary="Kick-off (all hands)")
    world.h.delete(ids[1])
    world.h.insert("late", day=20)
    assert world.sync().outcome is Outcome.SYNCED
    feed = world.h.check()
    messages = world.pubsub.pull(len(feed))
    assert _seqs(messages) == [e.seq for e in feed] == list(range(1, 16))
    state = world.state()
    assert state["published_seq"] == state["change_seq"] == 15
    assert state.get("publish_pending_since") is None
    stored = {int(d.to_dict()["seq"]): d.to_dict() for d in world.db.collection(
        f"subscriptions/{world.sub_id}/changes").stream()}
    for message in messages:
        entry = json.loads(message.data)
        assert entry == entry_json(codec.decode_change(stored[message.seq]))
        assert entry["at"].endswith("Z") and entry["expire_at"].endswith("Z")
        assert message.ordering_key == world.sub_id
        # An updated entry names each changed field (`changed_<field>`).
        changed = ({f"changed_{name}": "true" for name in entry["fields"]}
                   if entry["kind"] == "updated" else {})
        marks = {"complete_as_of": watermark} if message.seq > 12 else {}
        assert message.attributes == {**changed, **marks,
            "ce-specversion": "1.0",
            "ce-id": f"{world.sub_id}/{message.seq}",
            "ce-source": f"//calsync/projects/{PROJECT}/subscriptions/{world.sub_id}",
            "ce-type": f"dev.calsync.event.{entry['kind']}",
            "ce-subject": entry["event_id"],
            "ce-time": entry["at"],
            "content-type": "application/json",
            "subscription_id": world.sub_id,
            "seq": str(message.seq),
            "kind": entry["kind"],
            "event_id": entry["event_id"],
            "label_team": "sales",
        }
    kinds = {json.loads(m.data)["event_id"]: json.loads(m.data) for m in messages[12:]}
    assert kinds[ids[0]]["fields"]["summary"] == {"before": "event 0",
                                                 "after": "Kick-off (all hands)"}
    assert kinds[ids[1]]["kind"] == "deleted"


def test_a_topic_configured_later_starts_at_change_seq_without_replaying_history(
        world: World) -> None:
    for i in range(6):
        world.h.insert(f"event {i}", day=i)
    assert world.sync(store=FirestoreStore(world.db), publish=False).outcome is Outcome.SYNCED
    assert "published_seq" not in world.state()  # no topic: no outbox
    world.h.insert("after the topic", day=9)
    assert world.sync().outcome is Outcome.SYNCED
    messages = world.pubsub.pull(1)
    assert _seqs(messages) == [7]
    assert world.state()["published_seq"] == 7


def test_a_crash_between_commit_and_publish_is_repaired_by_the_next_run(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld) -> None:
    # A window of 4: the backlog goes out in steps, read back from the store.
    world = World(firestore_db, calendar, pubsub, max_messages=4,
                  timeout=30.0)  # a loaded machine must not defer the publishing
    for i in range(12):
        world.h.insert(f"event {i}", day=i)
    with pytest.raises(Crash):
        world.sync(store=world.crashing(after_calls=2))
    state = world.state()
    assert state["change_seq"] > 0 and state["published_seq"] < state["change_seq"]
    assert state["publish_pending_since"] is not None
    assert world.sync().outcome is Outcome.SYNCED
    feed = world.h.check()
    messages = world.pubsub.pull(len(feed))
    assert _first_copies(messages) == list(range(1, len(feed) + 1))
    assert world.state()["published_seq"] == len(feed)
    assert world.state().get("publish_pending_since") is None


def _renewer(world: World, queue: RecordingQueue) -> Renewer:
    settings = Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": PROJECT, "CALSYNC_REGION": "local",
        "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/", "CALSYNC_CHANNEL_TOKEN_KEYS": f"k:{KEY}",
        "CALSYNC_PUBSUB_TOPIC": world.pubsub.topic, "CALSYNC_OUTBOX_SWEEP_SECONDS": "30",
    })
    subs = SubscriptionStore(world.db)
    clock = [world.h.clock()]
    service = SubscriptionService(settings, subs, ScriptedChannels(clock), world.h.store, queue,
                                  clock=world.h.clock)
    sweeper = OutboxSweeper(world.h.store, queue, timedelta(seconds=30))
    return Renewer(settings, subs, service, clock=world.h.clock, outbox=sweeper)


def test_a_crash_is_repaired_by_the_renewers_sweep_even_when_paused(world: World) -> None:
    for i in range(8):
        world.h.insert(f"event {i}", day=i)
    assert world.sync().outcome is Outcome.SYNCED
    assert len(world.pubsub.pull(8)) == 8
    world.h.insert("new one", day=10)
    world.h.insert("another", day=11)
    with pytest.raises(Crash):
        world.sync(store=world.crashing(after_calls=1))
    world.db.document(f"subscriptions/{world.sub_id}").update({"status": "paused"})
    queue = RecordingQueue()
    assert _renewer(world, queue).run().outbox_swept == 0  # within the grace
    world.h.clock.advance(31)
    report = _renewer(world, queue).run()
    assert report.outbox_swept == 1
    assert [t for t in queue.tasks if t[2].startswith("outbox")] == [
        (world.sub_id, 10, queue.tasks[-1][2])]
    # The swept task: paused, so nothing is synced, but the outbox is published.
    swept = world.task()
    assert swept.outcome is Outcome.INACTIVE and swept.published == 2
    assert _first_copies(world.pubsub.pull(2)) == [9, 10]
    state = world.state()
    assert state["published_seq"] == 10 and state.get("publish_pending_since") is None
    assert state["lease_until"] is None
    world.h.clock.advance(31)
    assert _renewer(world, RecordingQueue()).run().outbox_swept == 0


def test_a_topic_that_refuses_publishes_loses_and_reorders_nothing(world: World) -> None:
    for i in range(6):
        world.h.insert(f"event {i}", day=i)
    assert world.sync().outcome is Outcome.SYNCED
    assert _seqs(world.pubsub.pull(6)) == list(range(1, 7))
    world.pubsub.delete_topic()
    for i in range(7):
        world.h.insert(f"while refused {i}", day=10 + i)
    report = world.sync()
    assert report.outcome is Outcome.SYNCED and report.entries["created"] == 7
    world.h.check()  # the sync itself is unchanged
    state = world.state()
    assert state["published_seq"] == 6 and state["change_seq"] == 13
    assert state["publish_pending_since"] is not None
    refused = world.task()  # still refused: nothing advances
    assert refused.outcome is Outcome.IDLE and refused.published == 0
    assert world.state()["published_seq"] == 6
    world.pubsub.recreate_topic()
    world.h.insert("after recovery", day=30)
    assert world.sync().outcome is Outcome.SYNCED
    assert _first_copies(world.pubsub.pull(8)) == list(range(7, 15))
    assert world.state()["published_seq"] == 14


def test_publishing_to_an_unreachable_pubsub_waits_at_most_the_timeout_and_syncs(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld,
        unreachable_pubsub: str) -> None:
    world = World(firestore_db, calendar, pubsub, timeout=1.0)
    for i in range(6):
        world.h.insert(f"event {i}", day=i)
    report = world.sync()
    assert report.outcome is Outcome.SYNCED and report.entries["created"] == 6
    world.h.check()
    state = world.state()
    assert state["published_seq"] == 0 and state["change_seq"] == 6
    assert state["sync_token"] and state["lease_until"] is None


def test_a_run_that_lost_its_lease_does_not_advance_published_seq(world: World) -> None:
    for i in range(3):
        world.h.insert(f"event {i}", day=i)
    store = world.h.store
    now = world.h.clock()
    old = store.acquire_lease(world.sub_id, now, now + timedelta(seconds=120)).lease
    assert old is not None
    world.h.request()
    world.h.clock.advance(200)  # the old run stalls past its lease
    assert world.sync().outcome is Outcome.SYNCED
    assert world.state()["published_seq"] == 3
    with pytest.raises(LeaseLost):
        store.advance_published(old, PublishProgress(99), now)
    stale = Outbox(store, world.publisher, PROJECT, 5.0).start(old)
    world.db.document(f"subscriptions/{world.sub_id}/state/writer").update(
        {"published_seq": 1, "publish_pending_since": now})
    stale.finish()
    assert stale.stopped and world.state()["published_seq"] == 1


def test_a_message_pubsub_refuses_is_replaced_by_a_marker_with_its_seq(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld) -> None:
    world = World(firestore_db, calendar, pubsub, max_message_bytes=3000)
    world.h.insert("small 1", day=1)
    world.h.insert("huge", day=2, description="x" * 4000)
    world.h.insert("small 2", day=3)
    assert world.sync().outcome is Outcome.SYNCED
    messages = world.pubsub.pull(3)
    assert _seqs(messages) == [1, 2, 3]
    markers = [m for m in messages if m.attributes.get("truncated") == "true"]
    assert len(markers) == 1
    data = json.loads(markers[0].data)
    assert data["truncated"] is True and data["seq"] == markers[0].seq
    assert world.h.feed()[markers[0].seq - 1].fields["summary"]["after"] == "huge"
    assert world.state()["published_seq"] == 3
