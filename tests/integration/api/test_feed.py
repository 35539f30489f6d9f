"""The feed's read side against the real Firestore emulator: cursors, filters,
retention (expired and deleted entries), event pages and their tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.feed import FirestoreFeedStore
from functions.api.errors import ApiError
from functions.api.feed import ChangesQuery, Feed
from functions.api.tokens import PageTokens
from functions.errors import CursorAhead, CursorExpired, EventMissing, SubscriptionNotFound
from tests.integration.api.feedwriter import FeedWriter, create_subscription, event

PAST = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def feed(firestore_db: Any) -> Feed:
    return Feed(FirestoreFeedStore(firestore_db), PageTokens([b"k" * 32]))


@pytest.fixture
def writer(firestore_db: Any) -> FeedWriter:
    create_subscription(firestore_db, "s1")
    return FeedWriter(firestore_db, "s1")


def test_changes_page_by_cursor(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event(f"e{i}", f"v{i}") for i in range(5)])
    page = feed.changes("s1", ChangesQuery(cursor=0, limit=2))
    assert [c["seq"] for c in page.changes] == [1, 2]
    assert (page.next_cursor, page.has_more) == (2, True)
    last = feed.changes("s1", ChangesQuery(cursor=4, limit=10))
    assert [c["seq"] for c in last.changes] == [5]
    assert (last.next_cursor, last.has_more) == (5, False)
    entry = last.changes[0]
    assert entry["kind"] == "created" and entry["event_id"] == "e4"
    assert entry["fields"]["summary"] == {"before": None, "after": "v4"}
    assert entry["at"].endswith("Z") and entry["expire_at"].endswith("Z")
    assert set(entry) == {"seq", "kind", "event_id", "recurring_event_id", "fields", "etag",
                          "at", "expire_at"}


def test_empty_feed_and_up_to_date_cursor(feed: Feed, writer: FeedWriter) -> None:
    page = feed.changes("s1", ChangesQuery())
    assert (page.changes, page.next_cursor, page.has_more) == ([], 0, False)
    writer.commit([event("a", "x")])
    page = feed.changes("s1", ChangesQuery(cursor=1))
    assert (page.changes, page.next_cursor, page.has_more) == ([], 1, False)


def test_cursor_beyond_change_seq_is_refused(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event("a", "x")])
    with pytest.raises(CursorAhead) as err:
        feed.changes("s1", ChangesQuery(cursor=2))
    assert err.value.change_seq == 1


def test_unknown_subscription(feed: Feed) -> None:
    with pytest.raises(SubscriptionNotFound):
        feed.changes("nope", ChangesQuery())
    with pytest.raises(SubscriptionNotFound):
        feed.events("nope", None, 10, False)
    with pytest.raises(SubscriptionNotFound):
        feed.event("nope", "a")


def test_filters_never_break_cursor_semantics(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event("a", "1"), event("b", "1")])           # 1, 2 created
    writer.commit([event("a", "2")])                             # 3 updated summary
    writer.commit([event("b", "1", location="room")])            # 4 updated location
    writer.commit([], deleted=["a"])                             # 5 deleted
    updated = feed.changes("s1", ChangesQuery(cursor=0, limit=4, kinds=("updated",)))
    assert [c["seq"] for c in updated.changes] == [3, 4]
    assert (updated.next_cursor, updated.has_more) == (4, True)
    by_field = feed.changes("s1", ChangesQuery(cursor=0, limit=100, fields=("location",)))
    # created and deleted entries always pass a fields filter; updates only when touched
    assert [c["seq"] for c in by_field.changes] == [1, 2, 4, 5]
    none = feed.changes("s1", ChangesQuery(cursor=1, limit=2, kinds=("deleted",)))
    assert (none.changes, none.next_cursor, none.has_more) == ([], 3, True)


def test_escaped_field_names_come_back_unescaped(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event("a", "1", extendedProperties={"private": {"__x__": "1", "": "e"}})])
    [entry] = feed.changes("s1", ChangesQuery()).changes
    assert entry["fields"]["extendedProperties"]["after"] == {"private": {"__x__": "1", "": "e"}}
    item = feed.event("s1", "a")
    assert item["event"]["extendedProperties"] == {"private": {"__x__": "1", "": "e"}}


def test_deleted_entries_mean_cursor_expired(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event(f"e{i}", "v") for i in range(6)])
    writer.delete_entries([1, 2, 3])
    for cursor in (0, 1, 2):
        with pytest.raises(CursorExpired) as err:
            feed.changes("s1", ChangesQuery(cursor=cursor, limit=2))
        assert err.value.oldest_available_seq == 4
    page = feed.changes("s1", ChangesQuery(cursor=3))
    assert [c["seq"] for c in page.changes] == [4, 5, 6]


def test_expired_but_present_entries_count_as_gone(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event("a", "1"), event("b", "1")], expire_at=PAST)
    writer.commit([event("c", "1")])
    for cursor in (0, 1):
        with pytest.raises(CursorExpired) as err:
            feed.changes("s1", ChangesQuery(cursor=cursor))
        assert err.value.oldest_available_seq == 3
    assert [c["seq"] for c in feed.changes("s1", ChangesQuery(cursor=2)).changes] == [3]


def test_everything_expired(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event("a", "1"), event("b", "1")], expire_at=PAST)
    with pytest.raises(CursorExpired) as err:
        feed.changes("s1", ChangesQuery(cursor=0))
    assert err.value.oldest_available_seq == 3  # nothing retained: bootstrap, then follow
    assert feed.changes("s1", ChangesQuery(cursor=2)).changes == []


def test_a_hole_met_while_reading_is_expired(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event(f"e{i}", "v") for i in range(5)])
    writer.delete_entries([3])
    with pytest.raises(CursorExpired):
        feed.changes("s1", ChangesQuery(cursor=0, limit=10))
    writer.delete_entries([5])  # a missing tail is a hole too
    with pytest.raises(CursorExpired):
        feed.changes("s1", ChangesQuery(cursor=3, limit=10))
    # A page that ends before the hole is still answered.
    assert [c["seq"] for c in feed.changes("s1", ChangesQuery(cursor=0, limit=2)).changes] \
        == [1, 2]


def test_events_pages_carry_as_of_seq(feed: Feed, writer: FeedWriter) -> None:
    writer.commit([event(f"e{i:02d}", "v") for i in range(7)])
    writer.commit([], deleted=["e03"])
    first = feed.events("s1", None, 3, False)
    assert first.as_of_seq == 8
    ids = [e["event_id"] for e in first.events]
    token = first.next_page_token
    writer.commit([event("e99", "late")])  # after the first page: not in as_of_seq
    while token:
        page = feed.events("s1", token, 3, False)
        assert page.as_of_seq == 8
        ids += [e["event_id"] for e in page.events]
        token = page.next_page_token
    assert ids == ["e00", "e01", "e02", "e04", "e05", "e06", "e99"]
    everything = feed.events("s1", None, 100, True)
    assert [e["event_id"] for e in everything.events if e["deleted"]] == ["e03"]
    assert everything.next_page_token is None and everything.as_of_seq == 9
    item = feed.event("s1", "e03")
    assert item["deleted"] is True and item["seq"] == 8
    assert item["event"]["status"] == "cancelled" and "_seq" not in item["event"]


def test_event_page_tokens_are_checked(feed: Feed, writer: FeedWriter,
                                       firestore_db: Any) -> None:
    writer.commit([event(f"e{i}", "v") for i in range(4)])
    create_subscription(firestore_db, "s2")
    token = feed.events("s1", None, 2, False).next_page_token
    assert token is not None
    body, mac = token.split(".")
    for bad in (token[:-2], "x" + token, body + ".AAAA", "garbage", token + "."):
        with pytest.raises(ApiError) as err:
            feed.events("s1", bad, 2, False)
        assert err.value.status == 400
    for sub_id, include_deleted in (("s2", False), ("s1", True)):
        with pytest.raises(ApiError):
            feed.events(sub_id, token, 2, include_deleted)
    other = Feed(FirestoreFeedStore(firestore_db), PageTokens([b"other key" * 4]))
    with pytest.raises(ApiError):
        other.events("s1", token, 2, False)


def test_missing_event(feed: Feed, writer: FeedWriter) -> None:
    with pytest.raises(EventMissing):
        feed.event("s1", "nope")


def test_clock_decides_expiry(firestore_db: Any, writer: FeedWriter) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    writer.commit([event("a", "1")], expire_at=soon)
    writer.commit([event("b", "1")])
    later = Feed(FirestoreFeedStore(firestore_db), PageTokens([b"k" * 32]),
                 clock=lambda: datetime.now(UTC) + timedelta(hours=2))
    with pytest.raises(CursorExpired) as err:
        later.changes("s1", ChangesQuery())
    assert err.value.oldest_available_seq == 2
