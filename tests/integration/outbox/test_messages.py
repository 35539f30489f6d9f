"""What a message is (DESIGN.md, "Delivery (outbox)"): the changes route's entry
byte for byte, Pub/Sub's limits checked before sending (an oversized message goes
straight to its marker, labels kept), and an outbox that starts at `change_seq`
whenever a topic is configured, also again after it was removed. Real Pub/Sub,
Firestore and Calendar emulators."""

from __future__ import annotations

import json
from typing import Any

from functions.adapters.firestore.feed import FirestoreFeedStore
from functions.adapters.firestore.store import FirestoreStore
from functions.api.feed import Feed
from functions.api.openapi import document
from functions.api.service import Api
from functions.api.tokens import PageTokens
from functions.delivery.outbox import Outbox
from functions.sync.engine import Outcome, SyncEngine, SyncSettings

from .conftest import PROJECT, PubSubWorld
from .standins import Recording
from .test_outbox import World

LONG_ID = "v" * 1024  # the longest id Calendar accepts; its instances' ids are longer


def _changes_route(db: Any, sub_id: str) -> bytes:
    """`GET /v1/subscriptions/{id}/changes` as the api function answers it."""
    api = Api(None, None, Feed(FirestoreFeedStore(db), PageTokens([b"k" * 32])),  # type: ignore[arg-type]
              None, None, document)  # type: ignore[arg-type]
    answer = api.handle("GET", f"/v1/subscriptions/{sub_id}/changes",
                        [("cursor", "0"), ("limit", "100")], None, b"")
    assert answer.status == 200, answer.body
    return answer.text().encode()


def test_a_message_body_is_the_changes_routes_entry_byte_for_byte(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld) -> None:
    """Whole-second times (the route prints six digits of microseconds even then)
    and text outside ASCII (the route escapes it) included."""
    world = World(firestore_db, calendar, pubsub)
    first = world.h.insert("Café: réunion — 会議", day=1)
    world.h.insert("plain", day=2, location="Zürich")
    world.h.request()
    engine = SyncEngine(world.h.store, world.h.calendar, world.h.queue,
                        SyncSettings(page_size=5, min_sync_interval=2),
                        clock=lambda: world.h.clock().replace(microsecond=0),
                        outbox=Outbox(world.h.store, world.publisher, PROJECT, 10.0))
    assert engine.run(world.sub_id).outcome is Outcome.SYNCED
    world.h.patch(first["id"], summary="Café: réunion annulée")
    world.h.request()
    assert engine.run(world.sub_id).outcome is Outcome.SYNCED
    messages = world.pubsub.pull(3)
    assert sorted(m.seq for m in messages) == [1, 2, 3]
    body = _changes_route(world.db, world.sub_id)
    for message in messages:
        entry = json.loads(message.data)
        assert entry["at"].endswith(".000000Z") and entry["expire_at"].endswith(".000000Z")
        assert message.data in body, (message.data, body)
    assert b"\\u00e9" in body and "é".encode() not in body


def test_an_attribute_over_pubsubs_limit_goes_straight_to_its_marker_with_labels(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld) -> None:
    """A modified instance of a series whose id is 1,024 characters has a longer
    id, too long for `ce-subject` / `event_id` (1,024 bytes): its message is
    replaced by the marker before sending (one submission, no round trip), and
    the marker keeps the subscription's labels."""
    world = World(firestore_db, calendar, pubsub)
    world.publisher = Recording(world.publisher)  # type: ignore[assignment]
    world.h.api.events().insert(calendarId="primary", body={
        "id": LONG_ID, "summary": "daily", "recurrence": ["RRULE:FREQ=DAILY;COUNT=3"],
        "start": {"dateTime": "2031-01-02T09:00:00Z", "timeZone": "UTC"},
        "end": {"dateTime": "2031-01-02T10:00:00Z", "timeZone": "UTC"}}).execute()
    instance = world.h.instances(LONG_ID)[1]
    assert len(instance["id"].encode()) > 1024
    world.h.patch(instance["id"], summary="moved")
    world.h.insert("after", day=9)
    assert world.sync().outcome is Outcome.SYNCED
    feed = world.h.check()
    long_seq = next(e.seq for e in feed if e.event_id == instance["id"])
    messages = {m.seq: m for m in world.pubsub.pull(len(feed))}
    assert sorted(messages) == [e.seq for e in feed]
    marker = messages[long_seq]
    assert marker.attributes["truncated"] == "true"
    assert marker.attributes["label_team"] == "sales"
    assert len(marker.attributes["event_id"].encode()) <= 1024
    assert instance["id"].startswith(marker.attributes["ce-subject"])
    assert json.loads(marker.data) == {"seq": long_seq, "kind": "created",
                                       "event_id": instance["id"], "truncated": True}
    sent = world.publisher.sent  # type: ignore[attr-defined]
    assert [s for s in sent if s[0] == long_seq] == [(long_seq, True)]
    assert sorted(s for s, _ in sent) == [e.seq for e in feed]  # one submission each
    assert all(m.attributes.get("truncated") is None for s, m in messages.items()
               if s != long_seq)


def test_a_topic_removed_and_configured_again_starts_at_change_seq(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld) -> None:
    world = World(firestore_db, calendar, pubsub)
    for i in range(3):
        world.h.insert(f"event {i}", day=i)
    assert world.sync().outcome is Outcome.SYNCED
    assert sorted(m.seq for m in world.pubsub.pull(3)) == [1, 2, 3]
    for i in range(2):  # written while no topic is configured: never published
        world.h.insert(f"unpublished {i}", day=10 + i)
    assert world.sync(store=FirestoreStore(world.db), publish=False).outcome is Outcome.SYNCED
    assert world.state()["change_seq"] == 5
    assert world.state().get("published_seq") is None  # no topic: no outbox
    world.h.insert("after the topic is back", day=20)
    assert world.sync().outcome is Outcome.SYNCED
    assert [m.seq for m in world.pubsub.pull(1)] == [6]
    state = world.state()
    assert state["published_seq"] == state["change_seq"] == 6
