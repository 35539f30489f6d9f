"""The scale simulation's stores do what the Firestore adapters do (issue 19 item 1).

One script of store calls (a subscription's life: created, requests recorded and
queued, a run with pages and publishing progress, channels saved, activated,
claimed, moved and deleted, the renewer's queries paged by cursor, a lifecycle
entry, lifecycle entries in a final commit, a failed run and transitions, the
`complete_as_of` watermark, deletion waiting for its message) runs against the
adapters on the Firestore emulator and against `infra.sim` over its in-memory
database, with the same clock; every answer and, after each step, every document the
step may touch must be the same. A store of the simulation that drifts from its
adapter (a field, a condition, a query's order) fails here, not silently in the
figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.budget import FirestoreCallBudget
from functions.adapters.firestore.catalogue import CALL_BUDGETS
from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.model import (
    ACTIVE,
    LISTED,
    PENDING,
    ChangeDraft,
    Channel,
    EventWrite,
    LeaseOutcome,
    LifecycleDraft,
    ListingProgress,
    Subscription,
)
from functions.ports import LifecycleStore, PublishProgress
from infra.sim.budget import SimCallBudget
from infra.sim.database import SimDatabase
from infra.sim.lifecycle import SimLifecycleStore
from infra.sim.stores import SimStore

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SUB = "s1"
OTHERS = ("s0", "s2", "s3")

# What only one side keeps: the simulation's update counter.
_SIM_ONLY = {"_version"}


class Side:
    """One implementation of the stores and a way to read its raw documents."""

    def __init__(self, store: Any, lifecycle: LifecycleStore,
                 docs: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.docs = docs


def _emulator_docs(client: Any) -> Callable[[], dict[str, dict[str, Any]]]:
    def read() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for sub in client.collection("subscriptions").stream():
            found[f"subscriptions/{sub.id}"] = sub.to_dict() or {}
            writer = sub.reference.collection("state").document("writer").get()
            if writer.exists:
                found[f"subscriptions/{sub.id}/state/writer"] = writer.to_dict() or {}
        for channel in client.collection("channels").stream():
            found[f"channels/{channel.id}"] = channel.to_dict() or {}
        for key in client.collection("subscription_keys").stream():
            found[f"subscription_keys/{key.id}"] = {"sub_id": (key.to_dict() or {})["sub_id"]}
        return found

    return read


def _sim_docs(db: SimDatabase) -> Callable[[], dict[str, dict[str, Any]]]:
    def read() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for sub_id, data in db.subs.items():
            found[f"subscriptions/{sub_id}"] = dict(data)
            if sub_id in db.writers:
                found[f"subscriptions/{sub_id}/state/writer"] = dict(db.writers[sub_id])
        for channel_id, data in db.channels.items():
            found[f"channels/{channel_id}"] = dict(data)
        for key, sub_id in db.keys.items():
            found[f"subscription_keys/{key}"] = {"sub_id": sub_id}
        return found

    return read


def _plain(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Documents as comparable values: no sim-only fields, times as UTC datetimes, a
    page commit's random `commit_id` by its presence only."""
    return {path: {k: "<commit id>" if k == "commit_id" else _value(v)
                   for k, v in doc.items() if k not in _SIM_ONLY}
            for path, doc in docs.items()}


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, value.hour, value.minute,
                        value.second, value.microsecond, tzinfo=UTC)
    if isinstance(value, dict):
        return {k: _value(v) for k, v in value.items()}
    return value


@pytest.fixture
def sides(firestore_db: Any) -> tuple[Side, Side]:
    real = Side(OutboxFirestoreStore(firestore_db), SubscriptionStore(firestore_db, outbox=True),
                _emulator_docs(firestore_db))
    db = SimDatabase(lambda: 0.0)
    sim = Side(SimStore(db, outbox=True), SimLifecycleStore(db, outbox=True), _sim_docs(db))
    return real, sim


def _same(real: Side, sim: Side, step: str) -> None:
    want, got = _plain(real.docs()), _plain(sim.docs())
    assert sorted(got) == sorted(want), step
    for path in want:
        assert got[path] == want[path], f"{step}: {path}"


def _both(real: Side, sim: Side, step: str,
          call: Callable[[Side], Any]) -> tuple[Any, Any]:
    answers = call(real), call(sim)
    _same(real, sim, step)
    return answers


def _writes(n: int) -> list[EventWrite]:
    return [EventWrite(f"e{i}", {"id": f"e{i}", "etag": f'"{i}"', "summary": f"event {i}"},
                       ChangeDraft("created", f"e{i}", {"summary": {"before": None,
                                                                    "after": f"event {i}"}},
                                   f'"{i}"')) for i in range(n)]


def test_the_simulated_stores_keep_the_documents_the_adapters_keep(
        sides: tuple[Side, Side]) -> None:
    real, sim = sides
    now = T0

    def sub(sub_id: str) -> Subscription:
        return Subscription(id=sub_id, calendar_id=f"{sub_id}@example.com",
                            owner="owner@example.com", credentials_ref="dwd")

    for sub_id in (SUB, *OTHERS):
        created = _both(real, sim, f"create {sub_id}",
                        lambda side, s=sub_id: side.lifecycle.create_or_get(sub(s), now))
        assert created[0] == created[1]
    again = _both(real, sim, "create again", lambda side: side.lifecycle.create_or_get(
        Subscription(id="other", calendar_id=f"{SUB}@example.com", owner="OWNER@example.com",
                     credentials_ref="dwd"), now))
    assert again[0] == again[1] and again[0][1] is False

    # The webhook: a request is recorded at creation, so this one needs no write.
    req = _both(real, sim, "request pending",
                lambda side: side.store.record_sync_request(SUB, now + timedelta(seconds=20)))
    assert req[0] == req[1] and req[0].needs_task
    _both(real, sim, "queued", lambda side: side.store.mark_queued(SUB, 1, now))
    _both(real, sim, "enqueue failed",
          lambda side: side.store.enqueue_failed("s2", 1))

    # A run: the lease, two pages, publishing progress, the final commit.
    t = now + timedelta(seconds=30)
    leases = _both(real, sim, "lease", lambda side: side.store.acquire_lease(
        SUB, t, t + timedelta(minutes=2), timedelta(seconds=2)))
    assert leases[0].outcome is leases[1].outcome is LeaseOutcome.ACQUIRED
    assert leases[0].lease == leases[1].lease
    lease = leases[0].lease
    assert lease is not None
    page = _both(real, sim, "page 1", lambda side: side.store.commit_page(
        lease, _writes(3), t, t + timedelta(minutes=2)))
    assert [_value(e) for e in page[0]] == [_value(e) for e in page[1]]
    assert [e["seq"] for e in page[0]] == [e["seq"] for e in page[1]] == [1, 2, 3]
    # A pass that spans runs saves where it stands with its commits (`state/writer`).
    progress = ListingProgress(sync_token=None, page_token="p2", mode="full", claimed_gen=1,
                               mark=lease.generation, started_at=t)
    _both(real, sim, "page 2", lambda side: side.store.commit_page(
        lease, _writes(5)[3:], t, t + timedelta(minutes=2),
        PublishProgress(2, oldest_unpublished_at=t), progress=progress))
    _both(real, sim, "marks", lambda side: side.store.commit_marks(
        lease, [EventWrite("e0", {"id": "e0", LISTED: lease.generation}, listed_only=True)],
        t, t + timedelta(minutes=2),
        progress=replace(progress, page_token=None, next_sync_token="token-1")))
    positions = _both(real, sim, "position",
                      lambda side: side.store.outbox_position(SUB))
    assert positions[0] == positions[1]
    entries = _both(real, sim, "entries", lambda side: side.store.read_entries(SUB, 2, 4))
    assert [e["seq"] for e in entries[0]] == [e["seq"] for e in entries[1]] == [3, 4]
    rejected = _both(real, sim, "rejected run", lambda side: side.store.note_rejected_run(lease))
    assert rejected[0] == rejected[1] == 1
    final = _both(real, sim, "final", lambda side: side.store.commit_final(
        lease, "token-1", t + timedelta(seconds=5), PublishProgress(4)))
    assert final[0] == final[1]

    # A new request after the run, and a publish-only lease for the entry left.
    t2 = t + timedelta(seconds=60)
    req = _both(real, sim, "request", lambda side: side.store.record_sync_request(SUB, t2))
    assert req[0] == req[1] and req[0].generation == 2
    publish = _both(real, sim, "publish lease",
                    lambda side: side.store.acquire_publish_lease(SUB, t2, t2 + timedelta(1)))
    assert publish[0] == publish[1] and publish[0] is not None
    released = _both(real, sim, "publish release", lambda side: side.store.release_publish_lease(
        publish[0], PublishProgress(5), t2))
    assert released[0] == released[1]
    assert released[0].request_pending and released[0].backlog == 0

    # Channels: saved pending, activated at the saved version, claimed from a query row.
    channel = Channel(id="c1", sub_id=SUB, state=PENDING)
    expires = t2 + timedelta(days=7)
    for side in (real, sim):
        version = side.lifecycle.save_channel(channel, t2, token_key_id="k1")
        assert side.lifecycle.activate_channel("c1", SUB, "r1", expires, version)
    _same(real, sim, "channel activated")
    for side in (real, sim):
        side.lifecycle.save_channel(Channel(id="c2", sub_id="s2", state=PENDING), t2)
        assert side.lifecycle.activate_channel("c2", "s2", "r2", expires - timedelta(hours=1))
        side.lifecycle.save_channel(Channel(id="c3", sub_id="s3", state=PENDING,
                                            expiration=t2 + timedelta(minutes=5)), t2)
    _same(real, sim, "channels saved")
    due = _both(real, sim, "due", lambda side: [
        (c.id, d["expiration"]) for c, d in side.lifecycle.due_channels(
            ACTIVE, expires, 1)])
    assert due[0] == due[1] == [("c2", expires - timedelta(hours=1))]
    page2 = _both(real, sim, "due after", lambda side: [
        c.id for c, _ in side.lifecycle.due_channels(ACTIVE, expires, 5, after=(
            expires - timedelta(hours=1), "c2"))])
    assert page2[0] == page2[1] == ["c1"]
    sharded = _both(real, sim, "due by shard", lambda side: sorted(
        c.id for k in range(2) for c, _ in side.lifecycle.due_channels(
            ACTIVE, expires, 5, shard=(k, 2))))
    assert sharded[0] == sharded[1] == ["c1", "c2"]
    for side in (real, sim):
        [(row, _)] = side.lifecycle.due_channels(ACTIVE, expires, 1)
        assert side.lifecycle.claim_channel(row.id, ACTIVE, t2, t2 + timedelta(minutes=5),
                                            "run-a", row.version)
        assert not side.lifecycle.claim_channel(row.id, ACTIVE, t2, t2 + timedelta(minutes=5),
                                                "run-b", row.version)
        held = side.lifecycle.claim_held(row.id, "run-a")
        assert held is not None and side.lifecycle.claim_held(row.id, "run-b") is None
        assert side.lifecycle.move_channel(row.id, [ACTIVE], {"state": "replaced"},
                                           held.version)
        assert not side.lifecycle.move_channel("c3", [ACTIVE], {"state": "stopped"})
        assert side.lifecycle.delete_channel("c3", PENDING)
        assert side.lifecycle.assign_shards(["c1", "gone"]) == 1
    _same(real, sim, "channels moved")

    # The renewer's subscription queries, paged by (value, id) cursors.
    for field in ("sweep_at", "safety_net_at"):
        rows = _both(real, sim, f"{field} page", lambda side, f=field: [
            (s.id, d.get(f)) for s, d in side.lifecycle.subscriptions_where(f, t2, 2)])
        assert rows[0] == rows[1] and len(rows[0]) == 2
        rest = _both(real, sim, f"{field} rest", lambda side, f=field, r=rows[0]: [
            s.id for s, _ in side.lifecycle.subscriptions_where(f, t2, 5,
                                                    after=(r[-1][1], r[-1][0]))])
        assert rest[0] == rest[1]
    oldest = _both(real, sim, "oldest", lambda side: side.lifecycle.oldest_request())
    assert oldest[0] == oldest[1]
    moved = _both(real, sim, "update_if", lambda side: (
        side.lifecycle.update_if("s0", {"requested_gen": 1}, {"sweep_at": t2}),
        side.lifecycle.update_if("s0", {"requested_gen": 7}, {"sweep_at": None})))
    assert moved[0] == moved[1] == (True, False)
    cleared = _both(real, sim, "clear marker",
                    lambda side: side.lifecycle.clear_request_marker("s3", 1))
    assert cleared[0] is cleared[1] is True

    # A lifecycle entry, a pause, and the deletion of the whole tree.
    seqs = _both(real, sim, "entry", lambda side: side.lifecycle.record_event(
        SUB, "resync_required", {"reason": "x"}, t2))
    assert seqs[0] == seqs[1] == 6

    # A run whose final commit writes a lifecycle entry and the `complete_as_of`
    # watermark (never moving back), then a run that fails into `error` (its entry).
    t3 = t2 + timedelta(minutes=1)
    leases = _both(real, sim, "lease 2", lambda side: side.store.acquire_lease(
        SUB, t3, t3 + timedelta(minutes=2)))
    lease2 = leases[0].lease
    assert lease2 is not None and leases[0].lease == leases[1].lease
    final = _both(real, sim, "final with entry", lambda side: side.store.commit_final(
        lease2, "token-2", t3, complete_as_of=t2,
        events=[LifecycleDraft("resync_required", {"reason": "gone"})]))
    assert [_value(e) for e in final[0].entries] == [_value(e) for e in final[1].entries]
    assert [e["seq"] for e in final[0].entries] == [7]
    t4 = t3 + timedelta(minutes=1)
    # A safety-net probe is out (it set when the next look is due): the final commit
    # of a run that found nothing new leaves that in place.
    probed = _both(real, sim, "probe", lambda side: side.lifecycle.update_if(
        SUB, {"probe_at": None}, {"probe_at": t4, "probe_seq": 7,
                                  "safety_net_at": t4 + timedelta(hours=18)}))
    assert probed[0] is True and probed[1] is True
    _both(real, sim, "request 3", lambda side: side.store.record_sync_request(SUB, t4))
    leases = _both(real, sim, "lease 3", lambda side: side.store.acquire_lease(
        SUB, t4, t4 + timedelta(minutes=2)))
    lease3 = leases[0].lease
    assert lease3 is not None and leases[0].lease == leases[1].lease
    assert lease3.complete_as_of is not None
    _both(real, sim, "watermark kept", lambda side: side.store.commit_final(
        lease3, "token-3", t4, complete_as_of=t))
    _both(real, sim, "request 4", lambda side: side.store.record_sync_request(
        SUB, t4 + timedelta(seconds=30)))
    leases = _both(real, sim, "lease 4", lambda side: side.store.acquire_lease(
        SUB, t4 + timedelta(seconds=30), t4 + timedelta(minutes=3)))
    lease4 = leases[0].lease
    assert lease4 is not None and leases[0].lease == leases[1].lease
    failed = _both(real, sim, "error", lambda side: side.store.release_lease(
        lease4, t4 + timedelta(seconds=31), error="grant revoked",
        reason="reauthorization_required"))
    assert [_value(e) for e in failed[0]] == [_value(e) for e in failed[1]]
    assert [e["kind"] for e in failed[0]] == ["reauthorization_required"]

    def paused(previous: str, data: dict[str, Any]) -> LifecycleDraft | None:
        return LifecycleDraft("paused", {"from": previous})

    moved = _both(real, sim, "pause", lambda side: side.lifecycle.transition(
        "s2", [ACTIVE], "paused", t2, event=paused))
    assert moved[0] == moved[1] and moved[0].event_seq == 1
    _both(real, sim, "resume", lambda side: side.lifecycle.transition(
        "s2", ["paused"], ACTIVE, t2, request_sync=True))
    gone = LifecycleDraft("subscription_deleted", {"calendar_id": f"{SUB}@example.com"})
    _both(real, sim, "begin delete", lambda side: side.lifecycle.begin_delete(
        SUB, t4, event=gone))
    _both(real, sim, "begin delete again", lambda side: side.lifecycle.begin_delete(
        SUB, t4, event=gone))
    feed = _both(real, sim, "feed", lambda side: [
        _value(e) for e in side.store.read_entries(SUB, 5, 20)])
    assert feed[0] == feed[1]
    assert [e["seq"] for e in feed[0]] == [6, 7, 8, 9]
    assert [e["kind"] for e in feed[0]][1:] == [
        "resync_required", "reauthorization_required", "subscription_deleted"]
    assert feed[0][1]["details"] == {"reason": "gone"}
    s2_feed = _both(real, sim, "s2 feed", lambda side: side.store.read_entries("s2", 0, 5))
    assert [e["kind"] for e in s2_feed[0]] == [e["kind"] for e in s2_feed[1]] == ["paused"]
    released = _both(real, sim, "deletion due", lambda side: side.store.release_publish_lease(
        side.store.acquire_publish_lease(SUB, t4 + timedelta(minutes=5),
                                         t4 + timedelta(minutes=6)),
        PublishProgress(9), t4 + timedelta(minutes=5)))
    assert released[0] == released[1] and released[0].deletion_due
    deleted = _both(real, sim, "delete", lambda side: side.lifecycle.delete_tree(SUB, "dwd"))
    assert deleted[0] == deleted[1]


def test_the_simulated_call_budget_keeps_the_documents_the_adapter_keeps(
        firestore_db: Any) -> None:
    """`SimCallBudget` against `FirestoreCallBudget`: the same answers to one script of
    takes (full, spent, booked slots, a run back for its slot, a renewal that books
    nothing, two owners, several shares), and the same `call_budgets` documents."""
    real = FirestoreCallBudget(firestore_db, per_minute=12, shards=2)
    db = SimDatabase(lambda: 0.0)
    sim = SimCallBudget(db, per_minute=12, shards=2)
    subs = [f"sub-{i}" for i in range(6)]
    script: list[tuple[str, str, int, datetime, datetime | None, bool]] = []
    for step in range(4):
        at = T0 + timedelta(seconds=step)
        script += [("a@example.com", sub_id, 1, at, None, True) for sub_id in subs]
        script.append(("b@example.com", subs[step], 2, at, None, False))
    answers: list[tuple[datetime | None, datetime | None]] = []
    for owner, sub_id, calls, at, booked, book in script:
        answers.append((real.take(owner, sub_id, calls, at, booked=booked, book=book),
                        sim.take(owner, sub_id, calls, at, booked=booked, book=book)))
    # Runs back at their slots, in the order they were given.
    slots = sorted((slot, index) for index, (slot, _) in enumerate(answers) if slot)
    for slot, index in slots[:4]:
        owner, sub_id, calls, _, _, _ = script[index]
        answers.append((real.take(owner, sub_id, calls, slot, booked=slot),
                        sim.take(owner, sub_id, calls, slot, booked=slot)))
    assert [a for a, _ in answers] == [b for _, b in answers]
    assert any(a is None for a, _ in answers) and any(a is not None for a, _ in answers)
    stored = {doc.id: _value_doc(doc.to_dict() or {})
              for doc in firestore_db.collection(CALL_BUDGETS).stream()}
    assert stored == {doc_id: _value_doc(doc) for doc_id, doc in sim.docs.items()}
    assert len(stored) == 4  # two owners, two shares each


def _value_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 9) if isinstance(v, float) else _value(v) for k, v in doc.items()}
