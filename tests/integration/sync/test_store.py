"""The Firestore adapter against the real emulator: lease, fencing, commits, feed, requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.adapters.firestore.store import QUERIES, FirestoreStore
from functions.errors import LeaseLost
from functions.model import (
    ChangeDraft,
    EventWrite,
    LeaseOutcome,
    Subscription,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SPAN = timedelta(seconds=120)


def _write(event_id: str, kind: str | None = "created", etag: str = "e1") -> EventWrite:
    change = None
    if kind:
        change = ChangeDraft(kind=kind, event_id=event_id, fields={"summary": {
            "before": None, "after": event_id}}, etag=etag)
    return EventWrite(event_id=event_id, snapshot={
        "id": event_id, "etag": etag, "summary": event_id, "_deleted": False}, change=change)


def test_lease_is_exclusive_until_it_expires(store: FirestoreStore, subscription: Subscription):
    first = store.acquire_lease(subscription.id, T0, T0 + SPAN)
    assert first.outcome is LeaseOutcome.ACQUIRED and first.lease is not None
    assert first.lease.first_sync and first.lease.sync_token is None
    busy = store.acquire_lease(subscription.id, T0 + SPAN / 2, T0 + SPAN * 2)
    assert busy.outcome is LeaseOutcome.BUSY
    later = T0 + SPAN + timedelta(seconds=1)
    second = store.acquire_lease(subscription.id, later, later + SPAN)
    assert second.lease is not None
    assert second.lease.generation == first.lease.generation + 1
    with pytest.raises(LeaseLost):
        store.commit_page(first.lease, [_write("a")], later, later + SPAN)
    with pytest.raises(LeaseLost):
        store.commit_final(first.lease, "tok", later)
    assert store.load_snapshots(subscription.id, ["a"]) == {"a": None}
    assert store.list_changes(subscription.id, 0, 10).entries == ()


def test_unknown_and_inactive_subscriptions(store: FirestoreStore):
    assert store.acquire_lease("nope", T0, T0 + SPAN).outcome is LeaseOutcome.NOT_FOUND
    store.save_subscription(Subscription(id="p", calendar_id="primary", owner="o",
                                         status="paused"))
    assert store.acquire_lease("p", T0, T0 + SPAN).outcome is LeaseOutcome.INACTIVE


def test_page_commits_allocate_dense_seq_and_final_commit_releases(
    store: FirestoreStore, subscription: Subscription
):
    lease = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    assert lease is not None
    store.commit_page(lease, [_write("a"), _write("b", kind=None), _write("c")], T0, T0 + SPAN)
    store.commit_page(lease, [_write("d")], T0, T0 + SPAN)
    page = store.list_changes(subscription.id, 0, 10)
    assert [(e.seq, e.event_id) for e in page.entries] == [(1, "a"), (2, "c"), (3, "d")]
    assert page.next_cursor == 3
    assert store.list_changes(subscription.id, 1, 1).entries[0].event_id == "c"
    assert store.list_changes(subscription.id, 3, 10).next_cursor == 3
    snaps = store.load_snapshots(subscription.id, ["a", "b", "zz"])
    assert snaps["a"]["_seq"] == 1 and "_seq" not in snaps["b"] and snaps["zz"] is None
    assert snaps["a"]["_synced_at"] == T0
    final = store.commit_final(lease, "token-1", T0)
    assert final.requested_gen == 0
    state = store.get_writer_state(subscription.id)
    assert state["sync_token"] == "token-1" and state["lease_until"] is None
    assert state["change_seq"] == 3
    assert store.acquire_lease(subscription.id, T0, T0 + SPAN).outcome is LeaseOutcome.IDLE
    store.record_sync_request(subscription.id, T0)  # a new notification
    again = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    assert again is not None and again.sync_token == "token-1" and not again.first_sync
    assert store.get_subscription(subscription.id).last_synced_at == T0


def test_live_ids_and_exceptions(store: FirestoreStore, subscription: Subscription):
    lease = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    writes = [_write(f"e{i:03d}") for i in range(25)]
    writes.append(EventWrite("x_1", {"id": "x_1", "etag": "1", "recurringEventId": "x",
                                     "_deleted": True}))
    store.commit_page(lease, writes, T0, T0 + SPAN)
    batches = list(store.iter_live_ids(subscription.id, 10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert sorted(i for b in batches for i in b) == [f"e{i:03d}" for i in range(25)]
    assert store.load_exception_ids(subscription.id, "x") == ["x_1"]
    assert store.has_events(subscription.id) and not store.has_events("other")


def test_sync_request_counters_write_nothing_while_a_request_is_pending(
    store: FirestoreStore, subscription: Subscription
):
    first = store.record_sync_request(subscription.id, T0)
    assert first.found and first.needs_task and first.generation == 1
    # Pending while its caller is queueing it: nothing to do for the others.
    assert not store.record_sync_request(subscription.id, T0).needs_task
    # The enqueue failed: the next caller queues the same generation, no new request.
    store.enqueue_failed(subscription.id, 1)
    again = store.record_sync_request(subscription.id, T0)
    assert again.needs_task and again.generation == 1
    store.mark_queued(subscription.id, 1, T0)
    second = store.record_sync_request(subscription.id, T0)
    assert second.found and not second.needs_task and second.generation == 1
    lease = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    assert lease is not None and lease.claimed_gen == 1
    third = store.record_sync_request(subscription.id, T0)
    assert third.needs_task and third.generation == 2
    assert store.commit_final(lease, "t", T0).requested_gen == 2
    store.mark_queued(subscription.id, 2, T0)
    assert not store.record_sync_request("missing", T0).found


def test_release_records_retry_and_error(store: FirestoreStore, subscription: Subscription):
    lease = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    store.release_lease(lease, T0, retry_at=T0 + timedelta(seconds=60))
    deferred = store.acquire_lease(subscription.id, T0, T0 + SPAN)
    assert deferred.outcome is LeaseOutcome.DEFERRED
    later = T0 + timedelta(seconds=61)
    lease = store.acquire_lease(subscription.id, later, later + SPAN).lease
    store.release_lease(lease, later, error="CredentialsRejected: revoked")
    sub = store.get_subscription(subscription.id)
    assert sub.status == "error" and sub.last_error == "CredentialsRejected: revoked"


def test_queries_name_their_composite_indexes():
    from functions.adapters.firestore import catalogue

    assert QUERIES is catalogue.QUERIES  # one catalogue for the store and Terraform
    for query in QUERIES:
        assert query["collection"] in ("channels", "subscriptions")
        assert all(order in ("ASCENDING", "DESCENDING") for _, order in query["fields"])


def test_cli_changes_prints_the_feed(store: FirestoreStore, subscription: Subscription,
                                     monkeypatch: pytest.MonkeyPatch):
    import io
    import json

    from functions.cli import changes
    from functions.cli import main as cli

    lease = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    store.commit_page(lease, [_write("a"), _write("b"), _write("c")], T0, T0 + SPAN)
    from functions.adapters.firestore.feed import FirestoreFeedStore
    from functions.api.feed import Feed
    from functions.api.tokens import PageTokens

    monkeypatch.setattr(changes, "_feed",
                        lambda: Feed(FirestoreFeedStore(store._client), PageTokens([b"k" * 32])))
    out = io.StringIO()
    assert cli.main(["changes", subscription.id, "--after", "1", "--limit", "1", "--json"],
                    out=out) == 0
    data = json.loads(out.getvalue())
    assert data["next_cursor"] == 2 and [e["event_id"] for e in data["entries"]] == ["b"]
    assert data["entries"][0]["kind"] == "created"
    out = io.StringIO()
    assert cli.main(["changes", subscription.id], out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1] == "next cursor: 3" and "created" in lines[0]
    out = io.StringIO()  # a cursor past the feed's end is refused, as by the API
    assert cli.main(["changes", subscription.id, "--after", "9", "--json"], out=out) == 2
    assert json.loads(out.getvalue())["error"]["code"] == "invalid_argument"


def test_a_run_too_soon_after_the_last_one_is_deferred_to_the_gap(
    store: FirestoreStore, subscription: Subscription
):
    lease = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    assert lease is not None
    store.commit_final(lease, "token-1", T0)
    store.record_sync_request(subscription.id, T0)
    gap = timedelta(seconds=2)
    soon = store.acquire_lease(subscription.id, T0 + gap / 2, T0 + SPAN, min_gap=gap)
    assert soon.outcome is LeaseOutcome.DEFERRED and soon.retry_at == T0 + gap
    later = store.acquire_lease(subscription.id, T0 + gap, T0 + SPAN, min_gap=gap)
    assert later.outcome is LeaseOutcome.ACQUIRED


def test_full_resync_request_is_served_inside_a_fenced_lease(
    store: FirestoreStore, subscription: Subscription
):
    lease = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    assert lease is not None and lease.full_resync == 0
    store.commit_final(lease, "token-1", T0)
    number = store.request_full_resync(subscription.id)
    forced = store.acquire_lease(subscription.id, T0, T0 + SPAN).lease
    # Not idle although nothing else was requested; lists in full, not as a first sync.
    assert forced is not None and forced.full_resync == number
    assert forced.sync_token is None and not forced.first_sync
    assert store.get_writer_state(subscription.id)["sync_token"] == "token-1"  # untouched
    store.commit_final(forced, "token-2", T0)
    assert store.get_writer_state(subscription.id)["full_resync_served"] == number
    assert store.acquire_lease(subscription.id, T0, T0 + SPAN).outcome is LeaseOutcome.IDLE
