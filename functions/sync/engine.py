"""The sync algorithm: one run of one subscription, talking only to ports.

A run takes the lease (its generation fences every later write), lists the
calendar incrementally with the stored sync token, or in full without one
(first sync, or after the token expired) and then reconciles deletions, and
commits the next token last. See DESIGN.md, "Syncs: requests, runs, fencing".
The pass itself (paging, commits, reconciliation, a pass longer than one run's
time) is `listing.SyncPass`.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from functions.errors import (
    PERMANENT_CALENDAR_ERRORS,
    CalendarRequestRejected,
    CalsyncError,
    LeaseLost,
    Misconfigured,
    QueueUnavailable,
    RateLimited,
    StoreError,
    StoreRejected,
)
from functions.model import Lease, LeaseOutcome
from functions.ports import (
    CalendarPort,
    CallBudget,
    ChannelKeeper,
    Deletions,
    PublishProgress,
    SyncStore,
    TaskQueue,
)
from functions.sync.budget import CallAllowance
from functions.sync.listing import (
    MAX_COMMIT_BYTES,
    MAX_TRANSACTION_WRITES,
    RECONCILE_BATCH,
    RunProgress,
    SyncPass,
    _chunks,
)

if TYPE_CHECKING:
    from functions.delivery.outbox import Outbox, RunPublishing

Clock = Callable[[], datetime]
# Channel checks in flight at once, per engine (one per run being leased; a run whose
# check waits for a thread still finds its answer before it lists).
CHANNEL_CHECK_THREADS = 8
__all__ = ["MAX_COMMIT_BYTES", "MAX_TRANSACTION_WRITES", "RECONCILE_BATCH", "Outcome",
           "SyncEngine", "SyncReport", "SyncSettings", "_chunks", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


class Outcome(Enum):
    SYNCED = "synced"
    BUSY = "busy"
    NOT_FOUND = "not_found"
    INACTIVE = "inactive"
    DEFERRED = "deferred"
    IDLE = "idle"  # a duplicate or late task: every request is already synced
    RATE_LIMITED = "rate_limited"
    CONTINUED = "continued"  # out of time: a follow-up task goes on with the pass
    LEASE_LOST = "lease_lost"
    FAILED = "failed"  # permanent: the subscription is now in `error`
    TRANSIENT = "transient"  # retry the task
    MISCONFIGURED = "misconfigured"  # our deployment is wrong: retry, loudly


@dataclass(frozen=True)
class SyncSettings:
    """The knobs of a run (from Settings in production)."""

    page_size: int = 2500
    lease_seconds: float = 120.0
    min_sync_interval: float = 2.0
    max_transaction_writes: int = MAX_TRANSACTION_WRITES
    max_commit_bytes: int = MAX_COMMIT_BYTES
    # Runs in a row whose request events.list refuses (a 4xx) before the
    # subscription goes to `error` (CALSYNC_GIVE_UP_ATTEMPTS).
    give_up_attempts: int = 5
    # Live snapshots a reconciliation looks at per batch (None: RECONCILE_BATCH).
    reconcile_batch: int | None = None
    # Seconds a run lists and commits before it leaves the rest of its pass to a
    # follow-up task (CALSYNC_RUN_BUDGET_SECONDS); None: no limit.
    run_budget: float | None = None
    # Calendar calls one task makes at most (CALSYNC_CALLS_PER_SYNC_TASK; the queue's
    # rate times this is the project's budget, `functions.sync.budget`); None: no limit.
    calls_per_task: int | None = None


@dataclass(frozen=True)
class SyncReport:
    """What one run did: everything its log line says."""

    subscription_id: str
    outcome: Outcome
    mode: str | None
    pages: int
    items: int
    reconciled: int
    entries: dict[str, int]
    duration: float
    error: str | None = None
    retry_at: datetime | None = None
    published: int = 0  # change entries Pub/Sub acknowledged in this run (the outbox)
    resumed: bool = False  # the run went on with a pass an earlier run began

    def log_fields(self) -> dict[str, object]:
        return {
            "subscription": self.subscription_id,
            "outcome": self.outcome.value,
            "mode": self.mode,
            "pages": self.pages,
            "items": self.items,
            "reconciled": self.reconciled,
            "entries": self.entries,
            "duration_s": round(self.duration, 3),
            "error": self.error,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "published": self.published,
            "resumed": self.resumed,
        }


class SyncEngine:
    """Runs syncs; `run` never raises for failures it knows (see `Outcome`)."""

    def __init__(
        self,
        store: SyncStore,
        calendar: CalendarPort,
        queue: TaskQueue,
        settings: SyncSettings | None = None,
        clock: Clock = utcnow,
        channels: ChannelKeeper | None = None,
        outbox: Outbox | None = None,
        deletions: Deletions | None = None,
        budget: CallBudget | None = None,
    ) -> None:
        self._budget = budget  # the owners' call budgets (with `calls_per_task`)
        self._outbox = outbox
        self._deletions = deletions  # finishes unsubscribes once their message is out
        self._store = store
        self._calendar = calendar
        self._queue = queue
        self._settings = settings or SyncSettings()
        self._clock = clock
        self._channels = channels
        self._pool: ThreadPoolExecutor | None = None  # channel checks (`_check_channel`)
        self._pool_lock = threading.Lock()

    def run(self, sub_id: str) -> SyncReport:
        """Sync one subscription once."""
        started, ticks = self._clock(), time.monotonic()
        progress = RunProgress()
        outcome, error, retry_at = self._run(sub_id, started, progress, ticks)
        return SyncReport(
            subscription_id=sub_id,
            outcome=outcome,
            mode=progress.mode,
            pages=progress.pages,
            items=progress.items,
            reconciled=progress.reconciled,
            entries=dict(progress.entries),
            duration=time.monotonic() - ticks,
            error=error,
            retry_at=retry_at,
            published=progress.published,
            resumed=progress.resumed,
        )

    def _run(
        self, sub_id: str, started: datetime, progress: RunProgress, ticks: float
    ) -> tuple[Outcome, str | None, datetime | None]:
        lease_span = timedelta(seconds=self._settings.lease_seconds)
        # The delivering-channel check is a read of its own: made while the lease
        # is taken, it costs the run no round trip of its own.
        channel_check = self._check_channel(sub_id)
        calls = self._settings.calls_per_task
        if calls is not None and self._budget is not None:
            # Likewise the owner's budget share the take after the lease will read.
            self._budget.warm(sub_id)
        try:
            attempt = self._store.acquire_lease(
                sub_id, started, started + lease_span,
                min_gap=timedelta(seconds=self._settings.min_sync_interval))
        except StoreError as err:
            if channel_check is not None:
                channel_check.cancel()  # no run: not needed (if not begun yet)
            return Outcome.TRANSIENT, _describe(err), None
        if attempt.lease is None and channel_check is not None:
            channel_check.cancel()  # no run: not needed (if not begun yet)
        if attempt.outcome is LeaseOutcome.DEFERRED and attempt.retry_at is not None:
            deferred = self._defer(sub_id, attempt.retry_at)
            if deferred[0] is Outcome.DEFERRED:
                # Committed entries need no Calendar call: publish them now (the
                # deferred task serves the request, so no follow-up from here).
                self._publish_only(sub_id, started, lease_span, progress, follow_up=False)
            return deferred
        if attempt.lease is None:
            outcome = Outcome(attempt.outcome.value)
            if attempt.outcome in (LeaseOutcome.IDLE, LeaseOutcome.INACTIVE):
                failed = self._publish_only(sub_id, started, lease_span, progress)
                if failed is not None:
                    return Outcome.TRANSIENT, failed, None
            if attempt.outcome is LeaseOutcome.INACTIVE and self._outbox is None \
                    and self._deletions is not None:
                # No topic here: an unsubscribe that waits for its message to be
                # published waits for nothing (it checks that it is `deleting`).
                with contextlib.suppress(CalsyncError):
                    self._deletions.finish_deletion(sub_id, unpublished_ok=True)
            return outcome, None, attempt.retry_at
        if calls is not None and self._budget is not None:
            try:
                sub = attempt.lease.subscription
                # A run deferred to a slot comes back with it (`_over_budget` stored it
                # as the subscription's `retry_at`): the slot is its own.
                allowed_at = self._budget.take(sub.owner, sub.id, calls, started,
                                               booked=sub.retry_at)
            except StoreError as err:
                self._release_quietly(attempt.lease)
                if channel_check is not None:
                    channel_check.cancel()  # no run: not needed (if not begun yet)
                return Outcome.TRANSIENT, _describe(err), None
            if allowed_at is not None:
                if channel_check is not None:
                    channel_check.cancel()  # no run: not needed (if not begun yet)
                return self._over_budget(attempt.lease, allowed_at)
        budget = self._settings.run_budget
        settings = replace(self._settings,
                           reconcile_batch=self._settings.reconcile_batch or RECONCILE_BATCH)
        allowance = CallAllowance(self._calendar, calls) if calls is not None else None
        run = SyncPass(self._store, allowance or self._calendar, settings, self._clock,
                       self._outbox, attempt.lease, progress,
                       deadline=ticks + budget if budget is not None else None)
        if allowance is not None:
            # The last call allowed is made: the pass begins no new page, saves where
            # it stands, and a follow-up task goes on from there (`_continue`).
            allowance.spent = lambda: setattr(run, "deadline", 0.0)
        try:
            if self._channels is not None and not _delivering(channel_check):
                # Watch first, then list: a change after the listing's snapshot
                # is then announced by a notification. The watch is a call of the
                # task's allowance: if it was the last one, the listing is the next
                # task's (so the queue's rate bounds the calls while subscriptions
                # are onboarded too; functions/sync/budget.py).
                opened = self._channels.ensure_channel(attempt.lease.subscription)
                if opened and allowance is not None:
                    allowance.spend()
                    if allowance.left <= 0:
                        return self._continue(run)
            token = run.sync()
            if token is None:
                return self._continue(run)
            publish = run.finish_publishing()  # bounded by the publish timeout; never raises
            final = self._store.commit_final(run.lease, token, self._clock(),
                                             **_with(publish),
                                             complete_as_of=run.listing_started,
                                             events=run.lifecycle_events())
            run.recorded(publish)
            if final.requested_gen > run.lease.claimed_gen:
                not_before = started + timedelta(seconds=self._settings.min_sync_interval)
                self._queue.enqueue_sync(sub_id, run.lease.generation, not_before, origin="run")
            elif run.publishing is not None and (run.publishing.continues() or final.entries):
                # Entries remain, or the final commit wrote a lifecycle entry after
                # this run's publishing ended: a task publishes them now.
                self._continue_publishing(sub_id, run.publishing, final.entries)
            return Outcome.SYNCED, None, None
        except LeaseLost as err:
            return Outcome.LEASE_LOST, _describe(err), None
        except RateLimited as err:
            run.finish_publishing()  # committed entries need no Calendar call
            return self._back_off(run.lease, err)
        except PERMANENT_CALENDAR_ERRORS as err:
            return self._fail(run, err)
        except CalendarRequestRejected as err:
            return self._refused(run, err)
        except StoreRejected as err:  # the data itself is refused: retrying cannot help
            return self._fail(run, err)
        except Misconfigured as err:
            # Ours, not the user's: the subscription stays as it is, the task is
            # retried, and the log line is an ERROR an alert fires on.
            self._release_quietly(run.lease)
            return Outcome.MISCONFIGURED, _describe(err), None
        except CalsyncError as err:
            self._release_quietly(run.lease)
            return Outcome.TRANSIENT, _describe(err), None
        except BaseException:
            self._release_quietly(run.lease)  # a bug must not hold the lease till expiry
            raise
        finally:
            run.settle_publishing()

    def _check_channel(self, sub_id: str) -> Future[bool | None] | None:
        """`ChannelKeeper.has_delivering`, started on a thread of the engine's."""
        if self._channels is None:
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(CHANNEL_CHECK_THREADS,
                                                thread_name_prefix="calsync-channel-check")
            return self._pool.submit(self._channels.has_delivering, sub_id)

    def publish_pending(self, sub_id: str) -> None:
        """Publish what waits unpublished now, in this process, within the publish
        timeout (the operator CLI's unsubscribe, so its deletion message goes out
        before it deletes). Never raises for a publish; queues no task."""
        started = self._clock()
        self._publish_only(sub_id, started, timedelta(seconds=self._settings.lease_seconds),
                           RunProgress(), follow_up=False, finish=False)

    def _continue(self, run: SyncPass) -> tuple[Outcome, str | None, datetime | None]:
        """The run is out of time, where its pass stands saved: let go of the lease,
        then queue the task that goes on from there (named by this run's lease
        generation, so a retry of this task queues the same one). Committed entries
        are published by that run, whose lease keeps the outbox's order."""
        lease = run.lease
        try:
            self._store.release_lease(lease, self._clock())
            self._queue.enqueue_sync(lease.subscription.id, lease.generation, origin="continue")
        except LeaseLost as err:
            return Outcome.LEASE_LOST, _describe(err), None
        except CalsyncError as err:  # the task is retried: its run goes on from the same place
            return Outcome.TRANSIENT, _describe(err), None
        return Outcome.CONTINUED, None, None

    def _publish_only(self, sub_id: str, started: datetime, span: timedelta,
                      progress: RunProgress, follow_up: bool = True,
                      finish: bool = True) -> str | None:
        """Nothing to sync (or paused, or deferred), but entries wait unpublished:
        take the lease only to publish them (DESIGN.md, "Delivery (outbox)"),
        fenced. On release, a sync request that waits gets the follow-up
        `commit_final` would leave (a task that met this lease answered BUSY and
        is gone); a backlog this run drained part of gets a continuation.
        Returns why the follow-up could not be queued (the task is retried)."""
        if self._outbox is None:
            return None
        outbox = self._outbox
        try:
            lease = outbox.store.acquire_publish_lease(sub_id, started, started + span)
        except CalsyncError:
            return None  # the renewer's sweep comes back
        if lease is None:
            return None
        publishing = outbox.start(lease)
        try:
            done = publishing.finish()
            progress.published = publishing.published
            release = outbox.store.release_publish_lease(lease, done, self._clock())
            publishing.recorded(done)
        except CalsyncError as err:
            self._release_quietly(lease)
            return None if isinstance(err, LeaseLost) else _describe(err)
        if follow_up and release.request_pending:
            not_before = started + timedelta(seconds=self._settings.min_sync_interval)
            try:
                self._queue.enqueue_sync(sub_id, lease.generation, not_before, origin="run")
            except CalsyncError as err:
                return _describe(err)
        elif release.backlog and publishing.continues():
            self._continue_publishing(sub_id, publishing)
        elif release.deletion_due and finish and self._deletions is not None:
            # Its `subscription_deleted` message is out: the unsubscribe can finish
            # (if this fails, the renewer resumes it).
            with contextlib.suppress(CalsyncError):
                self._deletions.finish_deletion(sub_id)
        return None

    def _continue_publishing(self, sub_id: str, publishing: RunPublishing,
                             entries: Sequence[dict[str, object]] = ()) -> None:
        """Entries remain and this run made progress (or a final commit wrote
        lifecycle entries): a task that goes on publishing at the rate Pub/Sub
        allows (named by where it starts: one per step)."""
        # Named by the lifecycle entry it is for, else where it starts.
        step, origin = ((int(str(entries[-1]["seq"])), "lifecycle") if entries
                        else (int(publishing.acked or 0), "publish"))
        with contextlib.suppress(CalsyncError):  # if refused, the renewer's sweep comes back
            self._queue.enqueue_sync(sub_id, step, origin=origin)

    def _defer(
        self, sub_id: str, retry_at: datetime
    ) -> tuple[Outcome, str | None, datetime | None]:
        # Make sure the retry is queued. Named by the time it runs AND the time
        # of this deferral: a task deferred twice to the same moment must not
        # re-create its own name (Cloud Tasks would answer AlreadyExists, and
        # answering 200 would delete the only task of the request).
        origin = f"defer{_epoch_ms(self._clock())}"
        try:
            self._queue.enqueue_sync(sub_id, _epoch_ms(retry_at), retry_at, origin=origin)
        except QueueUnavailable as err:
            return Outcome.TRANSIENT, _describe(err), retry_at
        return Outcome.DEFERRED, None, retry_at

    def _over_budget(
        self, lease: Lease, allowed_at: datetime
    ) -> tuple[Outcome, str | None, datetime | None]:
        """The owner's call budget is short: no call made; the run is deferred to when
        the budget holds its allowance, in a task named for that time (as `_back_off`)."""
        now = self._clock()
        try:
            self._store.release_lease(lease, now, retry_at=allowed_at)
            self._queue.enqueue_sync(lease.subscription.id, _epoch_ms(allowed_at), allowed_at,
                                     origin="budget")
        except LeaseLost as lost:
            return Outcome.LEASE_LOST, _describe(lost), None
        except CalsyncError as failure:
            return Outcome.TRANSIENT, _describe(failure), allowed_at
        return Outcome.DEFERRED, "over the owner's Calendar call budget", allowed_at

    def _back_off(
        self, lease: Lease, err: RateLimited
    ) -> tuple[Outcome, str | None, datetime | None]:
        now = self._clock()
        retry_at = now + timedelta(seconds=err.retry_after)
        try:
            self._store.release_lease(lease, now, retry_at=retry_at)
            self._queue.enqueue_sync(
                lease.subscription.id, _epoch_ms(retry_at), retry_at, origin="retry"
            )
        except LeaseLost as lost:
            return Outcome.LEASE_LOST, _describe(lost), None
        except CalsyncError as failure:
            return Outcome.TRANSIENT, _describe(failure), retry_at
        return Outcome.RATE_LIMITED, _describe(err), retry_at

    def _fail(
        self, run: SyncPass, err: CalsyncError
    ) -> tuple[Outcome, str | None, datetime | None]:
        """Permanent: the subscription goes to `error`; the release writes its
        lifecycle entry (fenced), which this run's publishing sends at once."""
        try:
            reason = getattr(err, "reason", None) or _snake(type(err).__name__)
            written = self._store.release_lease(run.lease, self._clock(), error=_describe(err),
                                                reason=reason)
        except LeaseLost as lost:
            return Outcome.LEASE_LOST, _describe(lost), None
        except CalsyncError as failure:
            return Outcome.TRANSIENT, _describe(failure), None
        if written and run.publishing is not None:
            run.publishing.committed(written)
            run.finish_publishing()  # its progress is recorded by `settle_publishing`
        return Outcome.FAILED, _describe(err), None

    def _refused(
        self, run: SyncPass, err: CalendarRequestRejected
    ) -> tuple[Outcome, str | None, datetime | None]:
        """events.list refused the request itself (a 4xx that is neither a rate limit
        nor an expired token): a bug, an API change or a calendar it cannot list.
        Retried (500) a bounded number of runs in a row, then permanent: the
        subscription goes to `error` with the reason, instead of retrying for ever."""
        lease = run.lease
        try:
            refused = self._store.note_rejected_run(lease)
        except LeaseLost as lost:
            return Outcome.LEASE_LOST, _describe(lost), None
        except CalsyncError as failure:
            self._release_quietly(lease)
            return Outcome.TRANSIENT, _describe(failure), None
        if refused >= self._settings.give_up_attempts:
            return self._fail(run, err)
        self._release_quietly(lease)
        return Outcome.TRANSIENT, f"{_describe(err)} (refused {refused} times)", None

    def _release_quietly(self, lease: Lease) -> None:
        # Lets the task's retry start at once instead of waiting for expiry.
        with contextlib.suppress(CalsyncError):
            self._store.release_lease(lease, self._clock())


def _delivering(check: Future[bool | None] | None) -> bool:
    """True only when the check answered that a delivering channel exists; a check
    that failed, was cancelled or cannot tell leaves it to `ensure_channel`."""
    if check is None or check.cancelled():
        return False
    try:
        return check.result() is True
    except Exception:  # noqa: BLE001 - the run's own check (ensure_channel) decides
        return False


def _with(publish: PublishProgress | None) -> dict[str, PublishProgress]:
    """The outbox's progress as a commit's keyword, only when there is some."""
    return {"publish": publish} if publish is not None else {}


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _describe(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
