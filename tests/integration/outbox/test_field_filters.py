"""Field-level push filters on the real Pub/Sub emulator (DESIGN.md, "Accounts,
lifecycle events, watermark"): an `updated` message carries `changed_<field>` per
changed top-level field, so a subscription filtered on
`attributes:changed_start OR attributes:changed_end` receives exactly the time
changes of a mixed workload, and the API's `fields=` filter agrees with the
attributes on the same entries.

The Pub/Sub emulator accepts a subscription's filter but does not apply it: a
subscription created with `attributes:changed_start OR attributes:changed_end`
received every message of this workload. So the attributes are checked end to
end (published to the emulator, pulled back), and the filters are applied to
them with Pub/Sub's documented semantics (`tests/unit/delivery/pubsub_filter.py`,
itself tested against the documentation's examples)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.adapters.firestore.feed import FirestoreFeedStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.api.feed import ChangesQuery, Feed
from functions.api.tokens import PageTokens
from functions.model import CALENDAR_ADDED
from functions.sync.engine import Outcome
from tests.unit.delivery.pubsub_filter import compile_filter

from .conftest import PubSubWorld
from .test_outbox import World


@pytest.fixture
def world(firestore_db: Any, calendar: Any, pubsub: PubSubWorld) -> World:
    return World(firestore_db, calendar, pubsub)


TIME_FILTER = "attributes:changed_start OR attributes:changed_end"
# What `fields=start,end` passes: every entry but an `updated` one that touches
# neither field (created, deleted and lifecycle entries always pass).
FIELDS_FILTER = 'NOT attributes.kind = "updated" OR ' + TIME_FILTER


def _time(day: int, hour: int) -> dict[str, Any]:
    return {"dateTime": f"2031-01-{day:02d}T{hour:02d}:00:00Z", "timeZone": "UTC"}


def _mixed_workload(world: World) -> tuple[list[str], set[str]]:
    """Events created and synced, then edits of every sort; the ids whose edit
    moved the start or the end."""
    ids = [world.h.insert(f"event {i}", day=i + 1)["id"] for i in range(8)]
    assert world.sync().outcome is Outcome.SYNCED
    world.h.patch(ids[0], summary="renamed")  # not a time change
    world.h.patch(ids[1], start=_time(3, 7))  # start only
    world.h.patch(ids[2], end=_time(4, 18))  # end only
    world.h.patch(ids[3], description="agenda attached")  # not a time change
    world.h.patch(ids[4], location="Room 4", start=_time(6, 8), end=_time(6, 9))  # both + more
    world.h.patch(ids[5], colorId="5", summary="recoloured")  # not a time change
    world.h.delete(ids[6])
    world.h.insert("late arrival", day=20)
    assert world.sync().outcome is Outcome.SYNCED
    return ids, {ids[1], ids[2], ids[4]}


def test_a_time_filter_receives_exactly_the_time_changes(world: World) -> None:
    _, moved = _mixed_workload(world)
    SubscriptionStore(world.db, outbox=True).record_event(
        world.sub_id, CALENDAR_ADDED, {"calendar_id": "team@example.com"}, world.h.clock())
    assert world.task().published == 1
    feed = world.h.feed()
    everything = world.pubsub.pull(len(feed))
    assert sorted({m.seq for m in everything}) == [e.seq for e in feed]  # all went out
    times = compile_filter(TIME_FILTER)
    got = sorted({m.seq for m in everything if times(m.attributes)})
    expected = [e.seq for e in feed if e.kind == "updated" and e.event_id in moved]
    assert len(expected) == 3 and got == expected
    # Lifecycle messages have no event id: this filter hears them too.
    with_lifecycle = compile_filter(TIME_FILTER + " OR NOT attributes:event_id")
    assert feed[-1].kind == CALENDAR_ADDED
    assert sorted({m.seq for m in everything if with_lifecycle(m.attributes)}) == (
        expected + [feed[-1].seq])
    # Every updated message names exactly the fields its entry changed.
    by_seq = {e.seq: e for e in feed}
    for message in everything:
        entry = by_seq[message.seq]
        named = {k[len("changed_"):] for k, v in message.attributes.items()
                 if k.startswith("changed_") and v == "true"}
        assert named == (set(entry.fields) if entry.kind == "updated" else set())


def test_the_api_fields_filter_and_the_attributes_agree(world: World,
                                                        firestore_db: Any) -> None:
    _mixed_workload(world)
    feed = world.h.check()
    api = Feed(FirestoreFeedStore(firestore_db), PageTokens([b"k" * 32]), clock=world.h.clock)
    page = api.changes(world.sub_id, ChangesQuery(cursor=0, limit=1000,
                                                  fields=("start", "end")))
    assert not page.has_more
    through_api = [entry["seq"] for entry in page.changes]
    assert 0 < len(through_api) < len(feed)  # the filter keeps some and drops some
    messages = world.pubsub.pull(len(feed))
    by_fields = compile_filter(FIELDS_FILTER)
    assert sorted({m.seq for m in messages if by_fields(m.attributes)}) == through_api
