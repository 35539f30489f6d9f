"""The feed's read side over what the real store writes (`FirestoreStore.commit_page`):
escaped snapshots and entries with `expire_at` from the feed retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.feed import FirestoreFeedStore
from functions.adapters.firestore.store import FirestoreStore
from functions.api.feed import ChangesQuery, Feed
from functions.api.tokens import PageTokens
from functions.errors import CursorExpired
from functions.model import ChangeDraft, EventWrite, Subscription

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=2)


def write(event_id: str, summary: str, kind: str = "created") -> EventWrite:
    resource = {"id": event_id, "status": "confirmed", "summary": summary,
                "extendedProperties": {"private": {"__odd__": "1"}}}
    fields: dict[str, dict[str, Any]] = {"summary": {"before": None, "after": summary}}
    if kind == "created":
        fields["extendedProperties"] = {"before": None,
                                        "after": resource["extendedProperties"]}
    return EventWrite(event_id, {**resource, "_deleted": False},
                      ChangeDraft(kind, event_id, fields, etag=f'"{summary}"'))


def test_pages_committed_by_the_store(firestore_db: Any) -> None:
    store = FirestoreStore(firestore_db, feed_retention=RETENTION)
    store.save_subscription(Subscription(id="s1", calendar_id="c", owner="o"))
    lease = store.acquire_lease("s1", T0, T0 + timedelta(minutes=2)).lease
    assert lease is not None
    store.commit_page(lease, [write("a", "1"), write("b", "1")], T0, T0 + timedelta(minutes=2))
    later = T0 + timedelta(days=1)
    store.commit_page(lease, [write("a", "2", "updated")], later, later + timedelta(minutes=2))

    def feed(now: datetime) -> Feed:
        return Feed(FirestoreFeedStore(firestore_db), PageTokens([b"k" * 32]), clock=lambda: now)

    page = feed(T0 + timedelta(hours=1)).changes("s1", ChangesQuery())
    assert [(c["seq"], c["kind"], c["event_id"]) for c in page.changes] == [
        (1, "created", "a"), (2, "created", "b"), (3, "updated", "a")]
    assert page.changes[0]["fields"]["extendedProperties"]["after"] == {
        "private": {"__odd__": "1"}}
    assert page.changes[0]["expire_at"] == "2026-12-02T12:00:00.000000Z"
    events = feed(T0).events("s1", None, 10, False)
    assert events.as_of_seq == 3
    assert [(e["event_id"], e["seq"], e["event"]["summary"]) for e in events.events] == [
        ("a", 3, "2"), ("b", 2, "1")]
    assert events.events[0]["event"]["extendedProperties"] == {"private": {"__odd__": "1"}}

    # Two and a half days on, the first page's entries have expired; the last has not.
    expired = feed(T0 + timedelta(days=2, hours=12))
    with pytest.raises(CursorExpired) as err:
        expired.changes("s1", ChangesQuery(cursor=0))
    assert err.value.oldest_available_seq == 3
    assert [c["seq"] for c in expired.changes("s1", ChangesQuery(cursor=2)).changes] == [3]
