"""The renewer's repair of the outbox: a publishing run for each subscription
whose entries stayed unpublished (DESIGN.md, "Delivery (outbox)", "Liveness").

The sweep reads rows by `publish_sweep_at`, the time its grace counts from, and
moves each row it looks at to when it is next due: a row whose publishing runs
got nothing acknowledged (`publish_attempts`) to its next attempt, after a
backoff that doubles per attempt from the grace up to `max_backoff`; a row it
queues a run for to when that run, if it published nothing, would be due again;
a row a run holds to the lease's end. However many rows never clear, each is
read once per attempt and the rows behind them are reached.

Rows written before `publish_sweep_at` existed carry only `publish_pending_since`:
any write of their runs gives it to them (`store.outbox_fields`), and meanwhile a
pass over the pending rows, one page of the sweep's reads per sweep, gives it to those without it;
once a whole pass found none, this instance stops looking.
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
        # The pass over rows written before `publish_sweep_at`: where it stopped,
        # whether this pass found any, whether a whole pass found none.
        self._legacy_after: dict[str, Any] | None = None
        self._legacy_found = False
        self._legacy_done = False

    def backoff(self, attempts: int) -> timedelta:
        """The wait after `attempts` (>= 1) publishing runs that got nothing acknowledged."""
        return min(self._grace * 2 ** min(max(attempts, 1) - 1, 30), self._max_backoff)

    def due_at(self, state: dict[str, Any]) -> datetime | None:
        """When a row's next publishing run is due after failed attempts (None: now)."""
        attempts = int(state.get("publish_attempts") or 0)
        attempted = state.get("publish_attempted_at")
        if attempts <= 0 or attempted is None:
            return None
        return attempted + self.backoff(attempts)  # type: ignore[no-any-return]

    def sweep(self, now: datetime, batch: int, max_reads: int) -> tuple[int, bool, list[str]]:
        """(runs enqueued, more may be due, errors)."""
        before = now - self._grace
        bucket = int(now.timestamp() // max(self._grace.total_seconds(), 1))
        enqueued, reads, after = 0, 0, None
        errors: list[str] = []
        self._adopt_legacy(now, max_reads, errors)
        while reads < max_reads:
            rows = self._store.due_outboxes(before, batch, after)
            reads += len(rows)
            for sub_id, state in rows:
                if enqueued >= batch:
                    return enqueued, True, errors
                lease_until = state.get("lease_until")
                if lease_until is not None and lease_until > now:
                    self._move(state, lease_until, errors)  # the run holding it publishes
                    continue
                due = self.due_at(state)
                if due is not None and due > now:
                    self._move(state, due, errors)  # backing off after runs that published nothing
                    continue
                try:
                    self._queue.enqueue_sync(sub_id, int(state.get("change_seq") or 0),
                                             origin=f"outbox{bucket}")
                    enqueued += 1
                except CalsyncError as err:
                    errors.append(f"{sub_id}: {type(err).__name__}")
                    continue
                # Not queued again while that run may still come: due again when it
                # would be if it publishes nothing (it writes the row first otherwise).
                attempts = int(state.get("publish_attempts") or 0)
                self._move(state, now + self.backoff(attempts + 1), errors)
            if len(rows) < batch:
                return enqueued, False, errors
            after = rows[-1][1]
        return enqueued, True, errors

    def _move(self, state: dict[str, Any], due: datetime, errors: list[str]) -> None:
        """Look at the row again at `due` (its `publish_sweep_at` is `due - grace`)."""
        try:
            self._store.move_outbox(state, due - self._grace)
        except CalsyncError as err:  # read again next sweep
            errors.append(f"outbox move: {type(err).__name__}")

    def _adopt_legacy(self, now: datetime, limit: int, errors: list[str]) -> None:
        """One page of the pass giving `publish_sweep_at` (the pending time) to rows
        written before it existed; a cold start only begins the pass again."""
        if self._legacy_done:
            return
        rows = self._store.pending_outboxes(now, limit, self._legacy_after)
        for _, state in rows:
            if state.get("publish_sweep_at") is None:
                self._legacy_found = True
                try:
                    self._store.move_outbox(state, state["publish_pending_since"])
                except CalsyncError as err:
                    errors.append(f"outbox adopt: {type(err).__name__}")
        if len(rows) == limit:
            self._legacy_after = rows[-1][1]
            return
        self._legacy_after = None
        self._legacy_done = not self._legacy_found
        self._legacy_found = False

    def oldest_pending_age(self, now: datetime) -> float | None:
        """Seconds since the oldest `publish_pending_since` (None: nothing waits):
        the head of its indexed query, whatever the rows' sort keys."""
        rows = self._store.pending_outboxes(now, 1)
        if not rows:
            return None
        since = rows[0][1].get("publish_pending_since")
        if not isinstance(since, datetime):
            return None
        return round(max((now - since).total_seconds(), 0.0), 3)
