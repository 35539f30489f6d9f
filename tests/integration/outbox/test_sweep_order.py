"""The outbox sweep's order over the real Firestore emulator (DESIGN.md, "Delivery
(outbox)", "Liveness"): a row whose publishing runs keep failing moves out of the
way (its next attempt time is its sort key), so however many such rows there are,
more than the sweep reads in a run, newer backlogs behind them are swept, and each
stuck row is still retried when its backoff is over.

The rows' outbox marks are written by `store.outbox_fields`, as the runs' fenced
writes write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.adapters.firestore.store import outbox_fields
from functions.delivery.outbox import OutboxSweeper
from functions.ports import PublishProgress
from tests.integration.lifecycle.conftest import RecordingQueue

from .standins import seed_backlog

GRACE = timedelta(seconds=60)
BATCH, MAX_READS = 5, 15
STUCK = 2 * MAX_READS + 3  # more than the sweep reads in one run, twice over
ATTEMPTS = 3  # after the third failed run the backoff is 60 s * 2**2 = 240 s
BACKOFF = timedelta(seconds=240)


def _pending(db: Any, sub_id: str, since: datetime, failures: list[datetime]) -> None:
    """A subscription whose entries wait unpublished since `since`, whose publishing
    runs at `failures` got nothing acknowledged: each write as `outbox_fields` makes it."""
    db.document(f"subscriptions/{sub_id}").set({"status": "active", "owner": "o"})
    writer = db.document(f"subscriptions/{sub_id}/state/writer")
    state: dict[str, Any] = {"change_seq": 3, "lease_until": None}
    state.update(outbox_fields({}, outbox=True, first=0, change_seq=3, now=since))
    writer.set(state)
    for at in failures:
        state = writer.get().to_dict() or {}
        writer.update(outbox_fields(state, outbox=True, first=3, change_seq=3, now=at,
                                    progress=PublishProgress(0, stalled=True)))


def _stuck(db: Any, now: datetime) -> list[str]:
    names = [f"stuck{i:03d}" for i in range(STUCK)]
    for i, name in enumerate(names):  # older than anything else: first in pending order
        _pending(db, name, now - timedelta(hours=5, seconds=i),
                 [now - timedelta(seconds=30 - k) for k in range(ATTEMPTS)])
    return names


def _queued(queue: RecordingQueue) -> list[str]:
    return [task[0] for task in queue.tasks]


def test_more_stuck_rows_than_the_sweep_reads_do_not_starve_a_newer_backlog(
        firestore_db: Any) -> None:
    now = datetime.now(UTC)
    stuck = _stuck(firestore_db, now)
    _pending(firestore_db, "fresh", now - timedelta(minutes=5), [])
    queue = RecordingQueue()
    sweeper = OutboxSweeper(OutboxFirestoreStore(firestore_db), queue, GRACE)
    ticks = 0
    while "fresh" not in _queued(queue) and ticks < 5:
        sweeper.sweep(now + timedelta(seconds=ticks), batch=BATCH, max_reads=MAX_READS)
        ticks += 1
    # Every stuck row is read at most once before it moves out of the way.
    assert _queued(queue) == ["fresh"], f"after {ticks} sweeps: {_queued(queue)}"
    # Moved: a backlog arriving later is swept by the first run past its grace,
    # without reading the stuck rows again.
    _pending(firestore_db, "later", now, [])
    sweeper.sweep(now + GRACE, batch=BATCH, max_reads=BATCH)
    assert _queued(queue) == ["fresh", "later"]
    # The age alert still sees the oldest unpublished entry, stuck or not.
    age = sweeper.oldest_pending_age(now)
    assert age is not None and age >= 5 * 3600

    # Their backoff over, every stuck row is retried, `BATCH` per run, each once.
    retry = now + BACKOFF
    for tick in range(STUCK // BATCH + 2):
        sweeper.sweep(retry + timedelta(seconds=tick), batch=BATCH, max_reads=MAX_READS)
    # (The fresh backlogs' runs never came in this test: they are queued again too.)
    retried = [name for name in _queued(queue)[2:] if name.startswith("stuck")]
    assert sorted(retried) == stuck, retried


def test_a_stuck_row_is_retried_at_its_backoff_not_before(firestore_db: Any) -> None:
    now = datetime.now(UTC)
    _pending(firestore_db, "stuck", now - timedelta(hours=1),
             [now - timedelta(seconds=10)] * ATTEMPTS)
    queue = RecordingQueue()
    sweeper = OutboxSweeper(OutboxFirestoreStore(firestore_db), queue, GRACE)
    sweeper.sweep(now, batch=BATCH, max_reads=MAX_READS)
    sweeper.sweep(now + BACKOFF - timedelta(seconds=11), batch=BATCH, max_reads=MAX_READS)
    assert _queued(queue) == []
    sweeper.sweep(now + BACKOFF - timedelta(seconds=10), batch=BATCH, max_reads=MAX_READS)
    assert _queued(queue) == ["stuck"]
    # Queued, it is not queued again while its run may still come: the next look is
    # its next backoff (480 s after the fourth attempt) unless that run writes first.
    sweeper.sweep(now + BACKOFF + GRACE, batch=BATCH, max_reads=MAX_READS)
    assert _queued(queue) == ["stuck"]


def test_rows_written_before_the_sort_key_existed_are_swept_behind_stuck_rows(
        firestore_db: Any) -> None:
    now = datetime.now(UTC)
    _stuck(firestore_db, now)
    # Written by the code before `publish_sweep_at` existed: only the pending time.
    seed_backlog(firestore_db, "legacy", 2, at=now - timedelta(minutes=5))
    queue = RecordingQueue()
    sweeper = OutboxSweeper(OutboxFirestoreStore(firestore_db), queue, GRACE)
    for tick in range(2 * STUCK // BATCH):
        if "legacy" in _queued(queue):
            break
        sweeper.sweep(now + timedelta(seconds=tick), batch=BATCH, max_reads=MAX_READS)
    assert _queued(queue) == ["legacy"]


def test_a_deleted_subscription_leaves_the_sweeps_query(firestore_db: Any) -> None:
    now = datetime.now(UTC)
    _pending(firestore_db, "gone", now - timedelta(hours=1), [])
    firestore_db.document("subscriptions/gone").delete()
    store = OutboxFirestoreStore(firestore_db)
    assert [sub for sub, _ in store.due_outboxes(now, 10)] == ["gone"]
    assert store.acquire_publish_lease("gone", now, now + timedelta(seconds=30)) is None
    # Nothing of it will be published: neither key keeps it in a query.
    assert store.due_outboxes(now, 10) == [] and store.pending_outboxes(now, 10) == []


def test_a_subscription_being_deleted_stays_in_the_sweep_until_published(
        firestore_db: Any) -> None:
    # Its deletion waits for its `subscription_deleted` message (DESIGN.md,
    # "Accounts, lifecycle events"): the sweep must keep bringing it a run.
    now = datetime.now(UTC)
    _pending(firestore_db, "going", now - timedelta(hours=1), [])
    firestore_db.document("subscriptions/going").update({"status": "deleting"})
    store = OutboxFirestoreStore(firestore_db)
    assert store.acquire_publish_lease("going", now, now + timedelta(seconds=30)) is not None
    assert [sub for sub, _ in store.due_outboxes(now, 10)] == ["going"]


def test_a_held_row_is_looked_at_again_when_its_lease_ends(firestore_db: Any) -> None:
    now = datetime.now(UTC)
    _pending(firestore_db, "held", now - timedelta(hours=1), [])
    until = now + timedelta(seconds=20)
    firestore_db.document("subscriptions/held/state/writer").update({"lease_until": until})
    queue = RecordingQueue()
    store = OutboxFirestoreStore(firestore_db)
    sweeper = OutboxSweeper(store, queue, GRACE)
    sweeper.sweep(now, batch=BATCH, max_reads=MAX_READS)
    assert _queued(queue) == [] and store.due_outboxes(now - GRACE, 10) == []
    # The run died holding it: looked at again when its lease ends.
    sweeper.sweep(until + timedelta(seconds=1), batch=BATCH, max_reads=MAX_READS)
    assert _queued(queue) == ["held"]
