"""The renewer's repair of the outbox: a publishing run for each subscription
whose entries stayed unpublished (DESIGN.md, "Delivery (outbox)").

A row whose publishing runs got nothing acknowledged (`publish_attempts`,
written by those runs) is due again only after a backoff that doubles per
attempt, from the sweep's grace up to `max_backoff`; until then it is read past
without counting against the batch, so rows that never clear cannot fill every
batch and starve newer backlogs behind them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from functions.errors import CalsyncError
from functions.ports import OutboxStore, TaskQueue


class OutboxSweeper:
    """Queues publishing runs for entries left unpublished longer than `grace`
    with no run holding the lease."""

    def __init__(self, store: OutboxStore, queue: TaskQueue, grace: timedelta,
                 max_backoff: timedelta | None = None) -> None:
        self._store = store
        self._queue = queue
        self._grace = grace
        self._max_backoff = max_backoff or timedelta(hours=6)

    def due_at(self, state: dict[str, Any]) -> datetime | None:
        """When a row's next publishing run is due after failed attempts (None: now)."""
        attempts = int(state.get("publish_attempts") or 0)
        attempted = state.get("publish_attempted_at")
        if attempts <= 0 or attempted is None:
            return None
        backoff = min(self._grace * 2 ** min(attempts - 1, 30), self._max_backoff)
        return attempted + backoff  # type: ignore[no-any-return]

    def sweep(self, now: datetime, batch: int, max_reads: int) -> tuple[int, bool, list[str]]:
        """(runs enqueued, more may be due, errors)."""
        before = now - self._grace
        bucket = int(now.timestamp() // max(self._grace.total_seconds(), 1))
        enqueued, reads, after = 0, 0, None
        errors: list[str] = []
        while reads < max_reads:
            rows = self._store.pending_outboxes(before, batch, after)
            reads += len(rows)
            for sub_id, state in rows:
                if enqueued >= batch:
                    return enqueued, True, errors
                lease_until = state.get("lease_until")
                if lease_until is not None and lease_until > now:
                    continue  # the run holding it publishes
                due = self.due_at(state)
                if due is not None and due > now:
                    continue  # backing off after runs that published nothing
                try:
                    self._queue.enqueue_sync(sub_id, int(state.get("change_seq") or 0),
                                             origin=f"outbox{bucket}")
                    enqueued += 1
                except CalsyncError as err:
                    errors.append(f"{sub_id}: {type(err).__name__}")
            if len(rows) < batch:
                return enqueued, False, errors
            after = rows[-1][1]["_path"]
        return enqueued, True, errors

    def oldest_pending_age(self, now: datetime) -> float | None:
        """Seconds since the oldest `publish_pending_since` (None: nothing waits):
        the head of the sweep's own indexed query."""
        rows = self._store.pending_outboxes(now, 1)
        if not rows:
            return None
        since = rows[0][1].get("publish_pending_since")
        if not isinstance(since, datetime):
            return None
        return round(max((now - since).total_seconds(), 0.0), 3)
