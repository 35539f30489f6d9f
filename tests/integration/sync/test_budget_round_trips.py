"""The owner's call budget on a run's path (issue 19 item 6), on the Firestore emulator.

A take is a read of its share and one write conditioned on that read (no transaction:
begin, read, commit). A run reads its share ahead, beside its lease (`warm`), once the
process has seen the subscription's owner: the take after the lease is then one
write. A write to the share between a read made ahead and the take's write fails it,
and it decides again from a new read: no token is spent twice; a read made ahead is
never trusted for "short".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.budget import FirestoreCallBudget
from functions.sync.engine import Outcome, SyncEngine, SyncSettings

from .harness import Harness
from .test_call_budget import OWNER, _share
from .test_round_trips import USER, rpcs  # noqa: F401 - the fixture

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _settle(budget: FirestoreCallBudget, subscription: str) -> None:
    """Wait for the read `warm` started (so the RPCs a take makes are its own)."""
    ahead = budget._ahead.get(subscription)
    assert ahead is not None, "nothing was read ahead"
    ahead.result(timeout=30)


def test_a_take_is_a_read_and_a_conditioned_write(firestore_db: Any,
                                                  rpcs: list[str]) -> None:  # noqa: F811
    budget = FirestoreCallBudget(firestore_db, per_minute=600, shards=1)
    rpcs.clear()
    assert budget.take(OWNER, "sub-a", 1, NOW) is None  # a new share: created
    assert budget.take(OWNER, "sub-a", 1, NOW) is None  # then conditioned on its read
    assert rpcs == ["batch_get_documents", "commit"] * 2, rpcs


def test_a_take_read_ahead_is_one_write(firestore_db: Any, rpcs: list[str]) -> None:  # noqa: F811
    budget = FirestoreCallBudget(firestore_db, per_minute=600, shards=1)
    budget.warm("sub-a")  # the owner is not known yet: nothing to read
    assert "sub-a" not in budget._ahead
    assert budget.take(OWNER, "sub-a", 1, NOW) is None
    held = _share(firestore_db, OWNER, 0).to_dict()["tokens"]
    budget.warm("sub-a")
    _settle(budget, "sub-a")
    rpcs.clear()
    assert budget.take(OWNER, "sub-a", 1, NOW) is None
    assert rpcs == ["commit"], rpcs
    assert _share(firestore_db, OWNER, 0).to_dict()["tokens"] == pytest.approx(held - 1)


def test_a_write_after_the_read_ahead_makes_the_take_decide_again(firestore_db: Any) -> None:
    """The share holds one call, refilled a minute after it was spent. This process
    reads it ahead (one call there), another process takes that call, then this take's
    write fails on the read it was made from, and from a new read it finds the share
    short: a slot, never a second spend of the same token."""
    budget = FirestoreCallBudget(firestore_db, per_minute=1, shards=1)
    other = FirestoreCallBudget(firestore_db, per_minute=1, shards=1)
    assert budget.take(OWNER, "sub-a", 1, NOW) is None  # spent; sub-a's owner known
    later = NOW + timedelta(seconds=60)  # refilled: one call
    budget.warm("sub-a")
    _settle(budget, "sub-a")
    assert other.take(OWNER, "sub-b", 1, later) is None
    slot = budget.take(OWNER, "sub-a", 1, later)
    assert slot == later + timedelta(seconds=60)
    share = _share(firestore_db, OWNER, 0).to_dict()
    assert share["tokens"] == pytest.approx(0.0)
    assert share["booked_until"] == slot + timedelta(seconds=60)


def test_a_short_answer_read_ahead_is_read_again(firestore_db: Any) -> None:
    """A read made ahead that finds the share short is read again: here another process
    booked the first slot after it, and a take without booking (a renewal) answers
    from the new read, behind that slot (the old read would have said the first)."""
    budget = FirestoreCallBudget(firestore_db, per_minute=1, shards=1)
    other = FirestoreCallBudget(firestore_db, per_minute=1, shards=1)
    assert budget.take(OWNER, "sub-a", 1, NOW) is None  # spent; sub-a's owner known
    budget.warm("sub-a")
    _settle(budget, "sub-a")
    booked = other.take(OWNER, "sub-b", 1, NOW)  # books the first slot
    assert booked == NOW + timedelta(seconds=60)
    answer = budget.take(OWNER, "sub-a", 1, NOW, book=False)
    assert answer == booked + timedelta(seconds=60)  # behind sub-b's booking


def test_a_run_reads_its_budget_share_beside_its_lease(firestore_db: Any, calendar: Any,
                                                       rpcs: list[str]) -> None:  # noqa: F811
    """From the second run of a subscription in a process on, its take is one write:
    lease (read, write), the take's write, the listed event's snapshot, the page."""
    world = Harness(firestore_db, calendar, USER)
    budget = FirestoreCallBudget(firestore_db, per_minute=6000, shards=1)
    world.insert("one", day=1)
    assert world.sync().outcome is Outcome.SYNCED
    world.insert("two", day=2)
    world.request()
    engine = SyncEngine(world.store, world.calendar, world.queue,
                        SyncSettings(min_sync_interval=2, calls_per_task=5),
                        clock=world.clock, budget=budget)
    assert engine.run(world.sub.id).outcome is Outcome.SYNCED  # learns the owner
    world.insert("three", day=3)
    world.request()
    rpcs.clear()
    report = engine.run(world.sub.id)
    assert report.outcome is Outcome.SYNCED and report.entries["created"] == 1, report
    on_path = list(rpcs)
    # The read ahead runs on a thread beside the lease: it is one of the batch gets,
    # and the commits before the page are the lease's and the take's.
    commits = [i for i, name in enumerate(on_path) if name == "commit"]
    assert len(commits) >= 3, on_path
    before_page = on_path[:commits[2] + 1]
    assert sorted(before_page) == sorted([
        "batch_get_documents", "batch_get_documents", "commit",  # lease; share read ahead
        "commit",  # the take
        "batch_get_documents",  # the listed event's snapshot
        "commit",  # the page
    ]), on_path
    assert "begin_transaction" not in on_path, on_path
    world.check()


class Contended:
    """The share's reference, with another writer touching the document after every
    read of it: each conditioned write then meets a write in between."""

    def __init__(self, ref: Any) -> None:
        self._ref = ref
        self.id, self.path = ref.id, ref.path
        self.writes = 0

    def get(self, *args: Any, **kwargs: Any) -> Any:
        snapshot = self._ref.get(*args, **kwargs)
        self._ref.set({"touched": self.writes}, merge=True)  # another process's take
        self.writes += 1
        return snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ref, name)


def test_a_take_that_always_loses_the_race_fails_after_its_attempts(
        firestore_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded: every conditioned write lost to another writer; the take answers
    StoreError after TAKE_ATTEMPTS reads (the run's task is retried by the queue),
    and it spent nothing."""
    from functions.adapters.firestore import budget as module
    from functions.errors import StoreError

    budget = FirestoreCallBudget(firestore_db, per_minute=600, shards=1)
    assert budget.take(OWNER, "sub-a", 1, NOW) is None  # the share exists
    held = _share(firestore_db, OWNER, 0).to_dict()["tokens"]
    contended = Contended(budget._ref(OWNER, "sub-a"))
    monkeypatch.setattr(budget, "_ref", lambda owner, subscription: contended)
    with pytest.raises(StoreError, match="contended"):
        budget.take(OWNER, "sub-a", 1, NOW)
    assert contended.writes == module.TAKE_ATTEMPTS
    assert _share(firestore_db, OWNER, 0).to_dict()["tokens"] == pytest.approx(held)
