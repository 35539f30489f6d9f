"""Crashes, fencing, concurrent workers: re-running converges, nothing is duplicated or lost."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from functions.sync.engine import Outcome

from .harness import Crash, CrashingStore, Harness, HookedCalendar, kinds


@pytest.fixture
def world(firestore_db: Any, calendar: Any) -> Harness:
    return Harness(firestore_db, calendar, "bob@example.com", page_size=4)


def _seed(world: Harness, count: int = 10) -> list[str]:
    return [world.insert(f"e{i}", day=i)["id"] for i in range(count)]


@pytest.mark.parametrize("crash_after", [1, 2, 3])
def test_crash_after_each_page_commit_of_a_first_sync(world: Harness, crash_after: int):
    ids = _seed(world)
    crashing = CrashingStore(world.db, "commit_page", crash_after)
    with pytest.raises(Crash):
        world.sync(store=crashing)
    assert world.store.get_writer_state(world.sub.id).get("sync_token") is None
    world.expire_lease()
    assert world.sync().outcome is Outcome.SYNCED
    assert sorted(kinds(world.check())) == sorted(("created", i) for i in ids)


@pytest.mark.parametrize("crash_after", [1, 2])
def test_crash_after_each_page_commit_of_an_incremental_sync(world: Harness, crash_after: int):
    ids = _seed(world)
    world.sync()
    start = len(world.check())
    token = world.store.get_writer_state(world.sub.id)["sync_token"]
    for event_id in ids:
        world.patch(event_id, summary=f"{event_id} v2")
    with pytest.raises(Crash):
        world.sync(store=CrashingStore(world.db, "commit_page", crash_after))
    assert world.store.get_writer_state(world.sub.id)["sync_token"] == token
    world.expire_lease()
    world.sync()
    entries = world.check()[start:]
    assert sorted(kinds(entries)) == sorted(("updated", i) for i in ids)


def test_crash_inside_deletion_reconciliation(world: Harness):
    ids = _seed(world, 12)
    world.sync()
    start = len(world.check())
    for event_id in ids[:9]:
        world.delete(event_id)
    world.emulator.control.invalidate_sync_tokens(world.user)
    # Reconciliation commits its deletions in chunks: crash after the first one.
    store = CrashingStore(world.db, "commit_page", 1)
    store_chunks = world.engine(store=store)
    store_chunks._settings = type(store_chunks._settings)(
        page_size=4, lease_seconds=120, min_sync_interval=2, max_transaction_writes=7)
    world.request()
    with pytest.raises(Crash):
        store_chunks.run(world.sub.id)
    partial = world.feed()[start:]
    assert 0 < len(partial) < 9
    world.expire_lease()
    report = world.sync()
    assert report.mode == "full_after_410"
    entries = world.check()[start:]
    # One `resync_required`, from the final commit of the run that completed (the
    # crashed run wrote none), after the deletions.
    assert kinds(entries)[-1] == ("resync_required", None)
    assert sorted(kinds(entries[:-1])) == sorted(("deleted", i) for i in ids[:9])


@pytest.mark.parametrize("before", [True, False])
def test_crash_at_the_final_commit(world: Harness, before: bool):
    ids = _seed(world, 6)
    with pytest.raises(Crash):
        world.sync(store=CrashingStore(world.db, "commit_final", 1, before=before))
    state = world.store.get_writer_state(world.sub.id)
    assert (state.get("sync_token") is None) is before
    world.expire_lease()
    world.sync()
    assert sorted(kinds(world.check())) == sorted(("created", i) for i in ids)


def test_a_run_whose_lease_was_taken_over_writes_nothing_more(world: Harness):
    ids = _seed(world, 10)
    world.sync()
    start = len(world.check())
    for event_id in ids:
        world.patch(event_id, summary=f"{event_id} v2")
    taken_over: list[Any] = []

    def pause(call: int) -> None:
        if call == 2:  # between page 1 and page 2: another run takes the expired lease
            late = world.engine(clock=lambda: world.clock() + _secs(121))
            taken_over.append(late.run(world.sub.id))

    paused = HookedCalendar(world.calendar, pause)
    report = world.sync(calendar=paused)
    assert taken_over[0].outcome is Outcome.SYNCED
    assert report.outcome is Outcome.LEASE_LOST
    entries = world.check()[start:]
    assert sorted(kinds(entries)) == sorted(("updated", i) for i in ids)


def test_two_workers_at_once_one_syncs_one_is_busy(world: Harness):
    ids = _seed(world, 8)
    world.store.record_sync_request(world.sub.id, world.clock())
    barrier = threading.Barrier(2)
    reports: list[Any] = []

    def run() -> None:
        barrier.wait()
        reports.append(world.sync())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(r.outcome.value for r in reports)
    assert outcomes == ["busy", "synced"]
    assert sorted(kinds(world.check())) == sorted(("created", i) for i in ids)


def test_busy_answer_leaves_the_work_to_the_lease_holder(world: Harness):
    _seed(world, 6)
    world.sync()
    world.store.record_sync_request(world.sub.id, world.clock())
    late_change: list[str] = []

    def during(call: int) -> None:
        if call == 1:  # a change lands and its notification finds the run busy
            late_change.append(world.insert("late", day=30)["id"])
            assert world.store.record_sync_request(world.sub.id, world.clock()).needs_task
            assert world.sync().outcome is Outcome.BUSY

    world.sync(calendar=HookedCalendar(world.calendar, during))
    [(sub_id, _, not_before, origin)] = world.queue.tasks
    assert sub_id == world.sub.id and origin == "run" and not_before is not None
    world.clock.advance(2)
    assert world.sync().outcome is Outcome.SYNCED
    assert late_change[0] in world.live()
    world.check()


def _secs(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)
