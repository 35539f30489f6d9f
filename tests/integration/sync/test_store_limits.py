"""What Firestore refuses, against the real emulator: keys it rejects are stored
escaped and read back exactly; a page too large for one commit is split; what
is left (a document over 1 MiB, a field name too long) is permanent and named."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.store import FirestoreStore
from functions.errors import StoreRejected
from functions.model import ChangeDraft, EventWrite, Lease, Subscription
from functions.sync import engine as sync
from functions.sync.engine import Outcome, SyncSettings

from .harness import Harness, kinds

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SPAN = timedelta(seconds=120)
ODD_KEYS = {"__x__": "1", "": "e", "~t": "t", "a.b": "dot", "`q`": "tick", "__": "u"}


@pytest.fixture
def world(firestore_db: Any, calendar: Any) -> Harness:
    return Harness(firestore_db, calendar, "erin@example.com", page_size=50)


class CountingStore(FirestoreStore):
    """The real store, counting page commits and the writes in each."""

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.commits: list[int] = []

    def commit_page(self, lease: Lease, writes: Sequence[EventWrite], now: datetime,
                    until: datetime) -> None:
        super().commit_page(lease, writes, now, until)
        self.commits.append(len(writes))


def _listed(world: Harness) -> dict[str, dict[str, Any]]:
    items = world.api.events().list(calendarId="primary", maxResults=2500).execute()["items"]
    return {item["id"]: item for item in items}


def _resource(snapshot: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (snapshot or {}).items() if not k.startswith("_")}


def test_keys_firestore_refuses_round_trip_exactly(world: Harness):
    event = world.insert("odd keys", extendedProperties={
        "private": dict(ODD_KEYS), "shared": {"__y__": "2", "~": "tilde"}})
    world.sync()
    listed = _listed(world)[event["id"]]
    assert listed["extendedProperties"]["private"] == ODD_KEYS
    stored = world.store.load_snapshots(world.sub.id, [event["id"]])[event["id"]]
    assert _resource(stored) == listed
    [created] = world.feed()
    assert created.fields["extendedProperties"] == {
        "before": None, "after": listed["extendedProperties"]}

    world.patch(event["id"], extendedProperties={"private": {**ODD_KEYS, "__x__": "2"}})
    world.sync()
    after = _listed(world)[event["id"]]
    assert after["extendedProperties"]["private"]["__x__"] == "2"
    assert _resource(world.store.load_snapshots(world.sub.id, [event["id"]])[event["id"]]) \
        == after
    updated = world.feed()[-1]
    assert updated.kind == "updated"
    assert updated.fields["extendedProperties"] == {
        "before": listed["extendedProperties"], "after": after["extendedProperties"]}
    world.check()


def _lease(store: FirestoreStore, sub_id: str) -> Lease:
    lease = store.acquire_lease(sub_id, T0, T0 + SPAN).lease
    assert lease is not None
    return lease


def _write(event_id: str, **resource: Any) -> EventWrite:
    snapshot = {"id": event_id, "etag": "1", "_deleted": False, **resource}
    fields = {name: {"before": None, "after": value} for name, value in resource.items()}
    return EventWrite(event_id, snapshot, ChangeDraft("created", event_id, fields, "1",
                                                      resource.get("recurringEventId")))


def test_documents_as_stored(firestore_db: Any, subscription: Subscription):
    store = FirestoreStore(firestore_db, feed_retention=timedelta(days=3))
    lease = _lease(store, subscription.id)
    props = {"private": dict(ODD_KEYS)}
    store.commit_page(lease, [_write("s_1", recurringEventId="s", extendedProperties=props)],
                      T0, T0 + SPAN)
    base = firestore_db.collection("subscriptions").document(subscription.id)
    raw = base.collection("events").document("s_1").get().to_dict()
    assert raw["event"]["extendedProperties"]["private"] == {
        "~__x__": "1", "~": "e", "~~t": "t", "a.b": "dot", "`q`": "tick", "__": "u"}
    assert raw["_recurring_event_id"] == "s" and raw["_deleted"] is False
    assert raw["_seq"] == 1 and raw["_synced_at"] == T0
    entry = base.collection("changes").document(f"{1:020d}").get().to_dict()
    assert entry["at"] == T0 and entry["expire_at"] == T0 + timedelta(days=3)
    assert entry["fields"]["extendedProperties"]["after"]["private"]["~__x__"] == "1"
    [read] = store.list_changes(subscription.id, 0, 10).entries
    assert read.fields["extendedProperties"]["after"] == props
    # A snapshot of the older flat layout is still read, and found as an exception.
    base.collection("events").document("s_0").set(
        {"id": "s_0", "etag": "0", "recurringEventId": "s", "_deleted": False})
    assert sorted(store.load_exception_ids(subscription.id, "s")) == ["s_0", "s_1"]
    assert store.load_snapshots(subscription.id, ["s_0"])["s_0"] == {
        "id": "s_0", "etag": "0", "recurringEventId": "s", "_deleted": False}
    assert sorted(i for b in store.iter_live_ids(subscription.id, 10) for i in b) == [
        "s_0", "s_1"]


def test_the_default_retention_is_30_days(store: FirestoreStore, subscription: Subscription):
    store.commit_page(_lease(store, subscription.id), [_write("a", summary="a")], T0, T0 + SPAN)
    raw = (store._sub(subscription.id).collection("changes").document(f"{1:020d}").get()
           .to_dict())
    assert raw["expire_at"] == T0 + timedelta(days=30)


def test_a_page_too_large_for_one_commit_is_split(world: Harness):
    # 40 events of ~200 KB: about 16 MB of snapshots and entries on one page,
    # where the emulator refuses any commit over 4 MiB.
    ids = [world.insert(f"big {i}", day=i, description=f"{i:02d}" + "d" * 200_000)["id"]
           for i in range(40)]
    store = CountingStore(world.db)
    report = world.sync(store=store)
    assert report.outcome is Outcome.SYNCED and report.pages == 1
    assert len(store.commits) >= 5 and sum(store.commits) == 40
    assert sorted(kinds(world.check())) == sorted(("created", i) for i in ids)
    assert all(len(s["description"]) == 200_002 for s in world.snapshots().values())

    for i, event_id in enumerate(ids):  # each entry now carries 200 KB before and after
        world.patch(event_id, description=f"{i:02d}" + "e" * 200_000)
    store = CountingStore(world.db)
    report = world.sync(store=store)
    assert report.outcome is Outcome.SYNCED and report.entries["updated"] == 40
    assert len(store.commits) >= 8 and sum(store.commits) == 40
    entries = world.check()
    assert [e.seq for e in entries] == list(range(1, 81))
    assert sorted(kinds(entries[40:])) == sorted(("updated", i) for i in ids)


def test_an_event_over_1_mib_fails_the_subscription_naming_it(world: Harness):
    world.insert("small", day=1)
    big = world.insert("huge", day=2, description="x" * 1_100_000)
    report = world.sync()
    assert report.outcome is Outcome.FAILED
    error = report.error or ""
    assert error.startswith(f"StoreRejected: event {big['id']} is ")
    assert error.endswith("bytes, over Firestore's 1 MiB document limit")
    sub = world.store.get_subscription(world.sub.id)
    assert sub is not None and sub.status == "error" and sub.last_error == error
    assert world.store.get_writer_state(world.sub.id).get("sync_token") is None
    # Not retried: the next task finds the subscription in error and does nothing.
    assert world.sync().outcome is Outcome.INACTIVE
    # No event entry; the one entry is the lifecycle entry saying why it stopped.
    assert [(e.kind, e.event_id) for e in world.feed()] == [("error", None)]


def test_a_refused_commit_is_narrowed_to_the_event_and_named(
    firestore_db: Any, subscription: Subscription
):
    class Unchecked(FirestoreStore):
        max_document_bytes = 10 * 1024 * 1024  # let the emulator refuse it

    store = CountingStore(firestore_db)
    unchecked = Unchecked(firestore_db)
    lease = _lease(store, subscription.id)
    writes = [_write("a", summary="a"), _write("b", description="x" * 1_100_000),
              _write("c", summary="c")]
    with pytest.raises(StoreRejected, match=r"^event b was refused by Firestore: .*\S"):
        unchecked.commit_page(lease, writes, T0, T0 + SPAN)
    # What came before the refused event is committed (in order, seq dense); not after.
    assert [e.event_id for e in store.list_changes(subscription.id, 0, 10).entries] == ["a"]
    assert store.load_snapshots(subscription.id, ["b", "c"]) == {"b": None, "c": None}
    # Checked before sending, the same page is refused whole, naming the event.
    with pytest.raises(StoreRejected, match="^event b is .* 1 MiB document limit"):
        store.commit_page(lease, writes[1:], T0, T0 + SPAN)


def test_a_field_name_too_long_is_refused_and_named(
    firestore_db: Any, subscription: Subscription
):
    store = FirestoreStore(firestore_db)
    lease = _lease(store, subscription.id)
    long_key = {"private": {"k" * 1600: "v"}}
    writes = [_write("fine", summary="fine"), _write("odd", extendedProperties=long_key)]
    with pytest.raises(StoreRejected) as refused:
        store.commit_page(lease, writes, T0, T0 + SPAN)
    assert str(refused.value).startswith("event odd was refused by Firestore: ")
    assert "field name of 1600 bytes" in str(refused.value)
    assert [e.event_id for e in store.list_changes(subscription.id, 0, 10).entries] == ["fine"]


def test_a_long_reconciliation_keeps_its_lease(world: Harness,
                                               monkeypatch: pytest.MonkeyPatch):
    ids = [world.insert(f"e{i}", day=i)["id"] for i in range(12)]
    world.sync()
    start = len(world.check())
    monkeypatch.setattr(sync, "RECONCILE_BATCH", 3)
    settings = SyncSettings(page_size=5, lease_seconds=10, min_sync_interval=2)
    rivals: list[Outcome] = []

    class SlowReconciliation(FirestoreStore):
        """Each batch of live ids takes 40% of the lease span; a rival run tries
        to take the subscription at every batch."""

        def iter_live_ids(self, sub_id: str, batch_size: int) -> Iterator[list[str]]:
            for batch in super().iter_live_ids(sub_id, batch_size):
                assert not set(batch) - set(ids)  # nothing unlisted: nothing to write
                world.clock.advance(4)
                rivals.append(world.engine(settings=settings).run(world.sub.id).outcome)
                yield batch

    world.store.request_full_resync(world.sub.id)
    world.request()
    slow = world.engine(store=SlowReconciliation(world.db), settings=settings)
    report = slow.run(world.sub.id)
    assert rivals == [Outcome.BUSY] * 4  # 16 s of reconciliation under a 10 s lease
    assert report.outcome is Outcome.SYNCED and report.reconciled == 0
    assert world.check()[start:] == []
