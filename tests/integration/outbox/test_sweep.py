"""The renewer's outbox sweep over the real Firestore emulator: rows whose runs
publish nothing back off instead of filling every batch ahead of newer backlogs,
and the "renewer run" line carries the outbox's age (`oldest_outbox_age_s`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.delivery.outbox import OutboxSweeper
from tests.integration.lifecycle.conftest import RecordingQueue

from .conftest import PubSubWorld
from .standins import seed_backlog
from .test_outbox import World, _renewer

GRACE = timedelta(seconds=60)


def _stuck(db: Any, sub_id: str, pending_since: datetime, attempts: int,
           attempted_at: datetime) -> None:
    """A row whose last `attempts` publishing runs got nothing acknowledged."""
    db.document(f"subscriptions/{sub_id}").set({"status": "active", "owner": "o"})
    db.document(f"subscriptions/{sub_id}/state/writer").set({
        "published_seq": 0, "change_seq": 3, "lease_until": None,
        "publish_pending_since": pending_since, "publish_attempts": attempts,
        "publish_attempted_at": attempted_at})


def test_rows_that_never_clear_back_off_and_do_not_starve_newer_backlogs(
        firestore_db: Any) -> None:
    now = datetime.now(UTC)
    for i in range(5):  # older than anything else, so first in the sweep's order
        _stuck(firestore_db, f"stuck{i}", now - timedelta(hours=5, seconds=i), attempts=3,
               attempted_at=now - timedelta(seconds=10))
    seed_backlog(firestore_db, "fresh", 2, at=now - timedelta(minutes=5))
    queue = RecordingQueue()
    sweeper = OutboxSweeper(OutboxFirestoreStore(firestore_db), queue, GRACE)
    queued, more, errors = sweeper.sweep(now, batch=3, max_reads=15)
    assert [t[0] for t in queue.tasks] == ["fresh"] and (queued, more, errors) == (1, False, [])
    # Their backoff (60 s doubled per attempt: 240 s after the third) over, they are due.
    later = now + timedelta(seconds=240)
    queued, _, _ = sweeper.sweep(later, batch=10, max_reads=30)
    assert sorted(t[0] for t in queue.tasks[1:]) == ["fresh"] + [f"stuck{i}" for i in range(5)]


def test_the_backoff_is_capped(firestore_db: Any) -> None:
    now = datetime.now(UTC)
    _stuck(firestore_db, "stuck", now - timedelta(days=2), attempts=40,
           attempted_at=now - timedelta(hours=2))
    queue = RecordingQueue()
    OutboxSweeper(OutboxFirestoreStore(firestore_db), queue, GRACE,
                  max_backoff=timedelta(hours=1)).sweep(now, batch=5, max_reads=5)
    assert [t[0] for t in queue.tasks] == ["stuck"]


def test_the_renewer_line_carries_the_oldest_outbox_age(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld,
        capsys: pytest.CaptureFixture[str]) -> None:
    world = World(firestore_db, calendar, pubsub)
    renewer = _renewer(world, RecordingQueue())
    report = renewer.run()
    assert report.oldest_outbox_age_s is None  # nothing waits
    since = world.h.clock() - timedelta(seconds=90)
    seed_backlog(firestore_db, "waiting", 4, published=1, at=since)
    seed_backlog(firestore_db, "younger", 2, at=since + timedelta(seconds=60))
    capsys.readouterr()
    report = _renewer(world, RecordingQueue()).run()
    assert report.oldest_outbox_age_s is not None and report.oldest_outbox_age_s >= 90
    line = next(json.loads(text) for text in capsys.readouterr().out.splitlines()
                if '"renewer run"' in text)
    assert line["oldest_outbox_age_s"] == report.oldest_outbox_age_s
