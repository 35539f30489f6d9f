"""The webhook reads a request beside its channel (issue 19 item 6), on the Firestore
emulator: when the channel is not cached but its subscription is known (a channel's
subscription never changes), the request's batch get of the subscription and
`state/writer` is begun before the channel is read, and the request is recorded from
it once the channel checks out. The write it decides is conditioned on that read, so
a request recorded in between by someone else is seen, and written once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.firestore.store import FirestoreStore
from functions.intake import channel_tokens
from functions.intake.webhook import Notification, WebhookService
from functions.model import Channel, Subscription
from tests.integration.lifecycle.conftest import RecordingQueue

KEYS = {"k1": b"r" * 32}
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Steps:
    def __init__(self) -> None:
        self.seen: list[str] = []


def _world(db: Any, steps: Steps) -> tuple[WebhookService, FirestoreStore, RecordingQueue]:
    class Channels(FirestoreChannelStore):
        def get_channel(self, channel_id: str) -> Channel | None:
            steps.seen.append("channel read")
            return super().get_channel(channel_id)

    class Store(FirestoreStore):
        def begin_request(self, sub_id: str) -> Any:
            steps.seen.append("request read begun")
            return super().begin_request(sub_id)

    store, channels, queue = Store(db), Channels(db), RecordingQueue()
    store.save_subscription(Subscription(id="sub-1", calendar_id="primary",
                                         owner="ahead@example.com", credentials_ref="bearer"))
    channels.save_channel(Channel("ch-1", "sub-1", "active", resource_id="res-1"), NOW)
    # A cache that never holds a channel: every notification reads it.
    service = WebhookService(channels, store, queue, KEYS, record_interval=3600,
                             min_sync_interval=0.0, clock=lambda: NOW,
                             channel_cache_seconds=1e-9)
    return service, store, queue


def _note(number: int, channel: str = "ch-1") -> Notification:
    return Notification(channel, "res-1", "exists", number,
                        channel_tokens.sign(channel, KEYS))


def _settle_run(db: Any, store: FirestoreStore) -> None:
    """A run claimed the pending request: the next notification is a new one."""
    state = db.collection("subscriptions").document("sub-1").collection("state")
    requested = int(store.get_subscription("sub-1").requested_gen)
    state.document("writer").set({"claimed_gen": requested,
                                  "lease_started_at": NOW - timedelta(hours=1)}, merge=True)


def test_the_request_is_read_beside_the_channel_once_its_subscription_is_known(
        firestore_db: Any) -> None:
    steps = Steps()
    service, store, queue = _world(firestore_db, steps)
    first = service.handle(_note(2))
    assert first.result == "queued"
    assert steps.seen == ["channel read"]  # the channel's subscription was not known
    _settle_run(firestore_db, store)
    steps.seen.clear()
    second = service.handle(_note(3))
    assert second.result == "queued", second
    assert steps.seen == ["request read begun", "channel read"]
    assert [(sub, gen) for sub, gen, _ in queue.tasks] == [("sub-1", 1), ("sub-1", 2)]
    assert store.get_subscription("sub-1").requested_gen == 2


def _known(firestore_db: Any) -> tuple[Steps, WebhookService, FirestoreStore, RecordingQueue]:
    """A world whose webhook has handled one notification (so it knows the channel's
    subscription) and whose run has claimed that request."""
    steps = Steps()
    service, store, queue = _world(firestore_db, steps)
    assert service.handle(_note(2)).result == "queued"
    _settle_run(firestore_db, store)
    return steps, service, store, queue


def test_a_request_recorded_after_the_read_ahead_is_seen_and_written_once(
        firestore_db: Any) -> None:
    _, _, store, _ = _known(firestore_db)
    begun = store.begin_request("sub-1")
    other = FirestoreStore(firestore_db).record_sync_request("sub-1", NOW)  # another instance
    assert other.needs_task and other.generation == 2
    mine = begun(NOW)  # read before the other's write: its conditioned write fails
    assert mine.found and not mine.needs_task and mine.generation == 2  # pending, queued
    assert store.get_subscription("sub-1").requested_gen == 2


def test_a_channel_turned_away_records_nothing_though_its_request_was_read(
        firestore_db: Any) -> None:
    steps, service, store, queue = _known(firestore_db)
    FirestoreChannelStore(firestore_db).save_channel(
        Channel("ch-1", "sub-1", "paused", resource_id="res-1"), NOW)
    steps.seen.clear()
    outcome = service.handle(_note(3))
    assert outcome.result == "ignored_paused_channel", outcome
    assert steps.seen == ["request read begun", "channel read"]
    assert store.get_subscription("sub-1").requested_gen == 1 and len(queue.tasks) == 1
