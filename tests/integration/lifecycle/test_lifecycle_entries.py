"""Lifecycle entries in the feed, on the Firestore emulator (DESIGN.md, "Accounts,
lifecycle events, watermark"): `record_event` takes the next `seq` after the run's
committed entries, interleaves densely with later page commits, marks the outbox,
and the changes route shows it with its kind, no event id, and its details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.feed import FirestoreFeedStore
from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.api.feed import ChangesQuery, Feed
from functions.api.tokens import PageTokens
from functions.model import (
    CALENDAR_ADDED,
    RESYNC_REQUIRED,
    ChangeDraft,
    EventWrite,
    Subscription,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SPAN = timedelta(seconds=120)


def _write(event_id: str) -> EventWrite:
    return EventWrite(event_id=event_id, snapshot={"id": event_id, "summary": event_id,
                                                   "_deleted": False},
                      change=ChangeDraft(kind="created", event_id=event_id,
                                         fields={"summary": {"before": None,
                                                             "after": event_id}}))


@pytest.fixture
def world(firestore_db: Any) -> tuple[OutboxFirestoreStore, SubscriptionStore, Feed]:
    store = OutboxFirestoreStore(firestore_db)
    store.save_subscription(Subscription(id="sub-1", calendar_id="primary", owner="alice"))
    lifecycle = SubscriptionStore(firestore_db, outbox=True)
    feed = Feed(FirestoreFeedStore(firestore_db), PageTokens([b"k" * 32]),
                clock=lambda: T0 + timedelta(minutes=1))
    return store, lifecycle, feed


def test_a_lifecycle_entry_follows_the_committed_entries(world: Any) -> None:
    store, lifecycle, feed = world
    lease = store.acquire_lease("sub-1", T0, T0 + SPAN).lease
    store.commit_page(lease, [_write("a"), _write("b")], T0, T0 + SPAN)
    seq = lifecycle.record_event("sub-1", RESYNC_REQUIRED, {"reason": "__sync_token_gone__"},
                                 T0)
    assert seq == 3
    store.commit_page(lease, [_write("c")], T0, T0 + SPAN)
    page = feed.changes("sub-1", ChangesQuery(cursor=0, limit=10))
    assert [(e["seq"], e["kind"], e["event_id"]) for e in page.changes] == [
        (1, "created", "a"), (2, "created", "b"), (3, RESYNC_REQUIRED, None),
        (4, "created", "c")]
    assert page.changes[2]["details"] == {"reason": "__sync_token_gone__"}  # escaped, restored
    assert "details" not in page.changes[0]
    only = feed.changes("sub-1", ChangesQuery(cursor=0, limit=10, kinds=(RESYNC_REQUIRED,)))
    assert [e["seq"] for e in only.changes] == [3] and only.next_cursor == 4


def test_the_outbox_is_marked_for_a_lifecycle_entry(world: Any) -> None:
    store, lifecycle, _ = world
    seq = lifecycle.record_event("sub-1", CALENDAR_ADDED, {"calendar_id": "c"}, T0)
    assert seq == 1
    position = store.outbox_position("sub-1")
    state = store.get_writer_state("sub-1")
    assert (position.published_seq, position.change_seq) == (0, 1)
    assert state["publish_pending_since"] is not None
    assert [e["kind"] for e in store.read_entries("sub-1", 0, 1)] == [CALENDAR_ADDED]


def test_interleaved_entries_stay_dense_and_ordered(world: Any) -> None:
    """Lifecycle entries between a run's page commits. (Run concurrently, the two
    transactions on `state/writer` serialise in production; the emulator's lock
    timeouts make a concurrent version of this test fail there, DESIGN.md "What the
    emulators do not show", so the interleaving is sequential here.)"""
    store, lifecycle, feed = world
    lease = store.acquire_lease("sub-1", T0, T0 + SPAN).lease
    for n in range(5):
        store.commit_page(lease, [_write(f"e{n}")], T0, T0 + SPAN)
        lifecycle.record_event("sub-1", RESYNC_REQUIRED, {"n": n}, T0)
    page = feed.changes("sub-1", ChangesQuery(cursor=0, limit=100))
    assert [e["seq"] for e in page.changes] == list(range(1, 11))
    assert [e["details"]["n"] for e in page.changes if e["kind"] == RESYNC_REQUIRED] == [
        0, 1, 2, 3, 4]
    assert [e["event_id"] for e in page.changes if e["kind"] == "created"] == [
        f"e{n}" for n in range(5)]


def test_an_unknown_subscription_is_refused(world: Any) -> None:
    _, lifecycle, _ = world
    with pytest.raises(LookupError):
        lifecycle.record_event("nope", RESYNC_REQUIRED, {}, T0)
