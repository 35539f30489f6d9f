"""The renewer: keeps channels open, repairs stranded requests, runs the safety net.

Every query is indexed and limited, so one invocation's work is proportional
to what is due, not to the number of subscriptions. A row's sort key is the
time it is next due, and a row the renewer cannot finish moves out of the way
(DESIGN.md, "Liveness"): a failed watch's record is due at its next attempt, a
request held by a run or a rate limit, or whose task chain still runs, is
looked at again when that ends, a subscription the safety net covered is
looked at an interval later. So however many rows are stuck, the rows behind
them are reached. Each section reads a bounded number of rows per run, from a
cursor taken from the rows as read. The renewer queues a continuation of
itself (after a delay, under a name derived from the time) only when a
section filled its batch AND made real progress (a channel renewed or
retired, a task queued, a record deleted; never a failure or a move). Every
action on a channel starts with a conditional claim that the renewal checks
again before it retires anything, so two renewer runs never renew one channel.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from functions import logs
from functions.config import Settings
from functions.errors import (
    CalendarError,
    CalendarGone,
    CalendarRequestRejected,
    CalsyncError,
    CredentialsRejected,
)
from functions.lifecycle.subscriptions import SubscriptionService, backoff
from functions.model import (
    ABANDONED,
    ACTIVE,
    DELETING,
    ERROR,
    PENDING,
    REPLACED,
    STOPPED,
    Channel,
    Subscription,
)
from functions.model import ACTIVE as SUB_ACTIVE
from functions.ports import LifecycleStore, RowCursor

if TYPE_CHECKING:
    from functions.delivery.outbox import OutboxSweeper

CONTINUE_AFTER = timedelta(seconds=10)
READ_PAST_FACTOR = 5  # rows read per section and run, at most, in batches
# Watch errors about the request or the calendar itself, not a passing failure:
# after `give_up_attempts` in a row the subscription goes to `error`.
REFUSED_WATCH_ERRORS = (CalendarRequestRejected, CalendarGone)
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass
class RenewalReport:
    renewed: int = 0
    retired: int = 0  # channels already replaced (a renewal that crashed midway)
    failed: int = 0
    orphans_stopped: int = 0
    abandoned: int = 0
    gave_up: int = 0  # subscriptions put in `error`: their watches kept being refused
    swept: int = 0
    safety_net: int = 0
    outbox_swept: int = 0  # publishing runs queued for entries left unpublished
    channels_deleted: int = 0  # abandoned channel records deleted once expired
    deletions_resumed: int = 0  # unsubscribes finished after they were interrupted
    moved: int = 0  # rows looked at and moved to when they are next due
    channel_reads: int = 0
    subscription_reads: int = 0
    oldest_pending_age_s: float | None = None
    continued: bool = False
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Step(Enum):
    """What acting on one row did."""

    PROGRESS = "progress"  # real progress: something finished for good
    FAILED = "failed"  # work was tried and failed (counts against the batch, not progress)
    MOVED = "moved"  # nothing to do yet: the row now sorts at when it is next due
    SKIPPED = "skipped"  # not ours (claimed elsewhere) or not due after all


@dataclass
class _Section:
    """One section's pass: work done, real progress, and whether more may be due."""

    work: int = 0
    progress: int = 0
    more: bool = False


Row = tuple[Any, dict[str, Any]]


class Renewer:
    def __init__(
        self,
        settings: Settings,
        subscriptions: LifecycleStore,
        service: SubscriptionService,
        continue_later: Callable[[datetime, str], None] | None = None,
        batch: int = 200,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        outbox: OutboxSweeper | None = None,
    ) -> None:
        self._outbox = outbox
        self._settings = settings
        self._subs = subscriptions
        self._service = service
        self._continue = continue_later
        self._batch = batch
        self._clock = clock
        self._claimant = ""

    def run(self) -> RenewalReport:
        report = RenewalReport()
        now = self._clock()
        self._claimant = uuid.uuid4().hex  # names this run's channel claims
        window = timedelta(seconds=self._settings.renewal_window)
        passes: list[tuple[str, Callable[[], _Section]]] = [
            ("renewal", lambda: self._renew_due(ACTIVE, now + window, now, report)),
            ("retry", lambda: self._renew_due(PENDING, now, now, report)),
            ("cleanup", lambda: self._clean_up(now, report)),
            ("sweep", lambda: self._sweep(now, report)),
            ("safety net", lambda: self._safety_net(now, report)),
            ("deletions", lambda: self._resume_deletions(now, report)),
        ]
        if self._outbox is not None:
            passes.append(("outbox", lambda: self._outbox_sweep(now, report)))
        sections = []
        for name, section in passes:
            try:  # one failing section (a query Firestore refused) leaves the others
                sections.append(section())
            except CalsyncError as err:
                report.errors.append(f"{name}: {type(err).__name__}")
        try:
            oldest = self._subs.oldest_request()
        except CalsyncError as err:
            oldest = None
            report.errors.append(f"oldest request: {type(err).__name__}")
        if oldest is not None:
            report.oldest_pending_age_s = round(max((now - oldest).total_seconds(), 0.0), 3)
        if self._continue is not None and any(s.more and s.progress for s in sections):
            bucket = int(now.timestamp() // CONTINUE_AFTER.total_seconds())
            try:
                self._continue(now + CONTINUE_AFTER, f"renew-{bucket}")
                report.continued = True
            except CalsyncError as err:  # the next scheduler tick continues anyway
                report.errors.append(f"continuation: {type(err).__name__}")
        counts = {k: v for k, v in report.to_json().items()
                  if k not in ("errors", "oldest_pending_age_s")}
        # `oldest_pending_age_s` feeds the alert on requests left waiting.
        logs.log("INFO", "renewer run", outcome="done", **counts,
                 oldest_pending_age_s=report.oldest_pending_age_s,
                 error_count=len(report.errors))
        return report

    # -- the scan every section shares ----------------------------------------------

    def _scan(self, fetch: Callable[[RowCursor | None], list[Row]],
              cursor_of: Callable[[Row], RowCursor], act: Callable[[Row], Step],
              label: Callable[[Row], str], report: RenewalReport,
              count_reads: Callable[[int], None]) -> _Section:
        """Act on due rows page by page: at most a batch of work (tries, failed or
        not), at most READ_PAST_FACTOR batches read. The cursor is the sort value
        and id of the last row as read, taken before acting on it: acting moves
        rows, never the cursor."""
        section, cursor, read = _Section(), None, 0
        while read < self._batch * READ_PAST_FACTOR:
            rows = fetch(cursor)
            read += len(rows)
            count_reads(len(rows))
            for row in rows:
                if section.work >= self._batch:
                    section.more = True
                    return section
                try:
                    step = act(row)
                except CalsyncError as err:  # this row only: the run goes on
                    report.errors.append(f"{label(row)}: {type(err).__name__}")
                    step = Step.FAILED
                if step is Step.MOVED:
                    report.moved += 1
                if step in (Step.PROGRESS, Step.FAILED):
                    section.work += 1
                section.progress += step is Step.PROGRESS
            if len(rows) < self._batch:
                return section
            cursor = cursor_of(rows[-1])
        section.more = True
        return section

    def _channel_scan(self, state: str, before: datetime, act: Callable[[Row], Step],
                      report: RenewalReport) -> _Section:
        return self._scan(
            lambda after: list(self._subs.due_channels(state, before, self._batch, after)),
            lambda row: (row[1].get("expiration"), row[0].id), act,
            lambda row: str(row[0].sub_id), report, lambda n: _add(report, channel_reads=n))

    def _subscription_scan(self, field_name: str, before: datetime,
                           act: Callable[[Subscription, dict[str, Any]], Step],
                           report: RenewalReport) -> _Section:
        return self._scan(
            lambda after: list(self._subs.subscriptions_where(field_name, before, self._batch,
                                                              after)),
            lambda row: (row[1].get(field_name), row[0].id), lambda row: act(*row),
            lambda row: str(row[0].id), report, lambda n: _add(report, subscription_reads=n))

    # -- channels -------------------------------------------------------------

    def _renew_due(self, state: str, before: datetime, now: datetime,
                   report: RenewalReport) -> _Section:
        """Renew active channels expiring within the window; retry pending records
        whose watch failed or never completed (their expiration is when they are due)."""
        return self._channel_scan(state, before,
                                  lambda row: self._renew(row[0], row[1], now, report), report)

    def _renew(self, channel: Channel, doc: dict[str, Any], now: datetime,
               report: RenewalReport) -> Step:
        """Handle one due channel."""
        next_attempt = doc.get("next_attempt_at")
        if next_attempt is not None and next_attempt > now:
            return Step.SKIPPED  # a record from before sort keys moved: due later
        claim_until = now + timedelta(seconds=self._settings.channel_claim)
        if not self._subs.claim_channel(channel.id, channel.state, now, claim_until,
                                        self._claimant):
            return Step.SKIPPED
        found = self._subs.get(channel.sub_id)
        report.subscription_reads += 1
        sub = found[0] if found else None
        if sub is None or sub.status != SUB_ACTIVE:
            self._retire_orphan(sub, channel, report)
            return Step.PROGRESS
        # The subscription names its newest active channel: only when that is
        # another one can a second delivering channel exist (a renewal that
        # crashed midway), and only then is it worth a query.
        current = found[1].get("channel_id") if found else None
        others = ([c for c in self._subs.delivering_channels(sub.id) if c.id != channel.id]
                  if current and current != channel.id else [])
        window_end = now + timedelta(seconds=self._settings.renewal_window)
        if channel.state == ACTIVE and any(
                o.state == ACTIVE and o.expiration is not None and o.expiration > window_end
                for o in others):
            self._retire(sub, channel)  # its replacement exists: a renewal crashed midway
            report.retired += 1
            return Step.PROGRESS
        if channel.state == PENDING and others:
            self._service.move_channel(channel.id, ABANDONED)
            report.retired += 1
            return Step.PROGRESS
        if not self._subs.holds_claim(channel.id, self._claimant):
            return Step.SKIPPED  # the reads above outlasted the claim: another run has it
        attempts = int(doc.get("renewal_attempts") or 0)
        try:
            opened = self._service.open_channel(sub, attempts=attempts)
        except CredentialsRejected as err:
            self._service.mark_error(sub, f"credentials rejected: {err}", err.reason)
            report.abandoned += 1
            report.errors.append(f"{sub.id}: credentials rejected")
            return Step.PROGRESS
        except CalendarError as err:
            self._failed(sub, channel, attempts + 1, err, report)
            return Step.FAILED
        if opened is None:
            return Step.FAILED  # paused or unsubscribed while the watch ran: closed again
        if not self._subs.holds_claim(channel.id, self._claimant):
            # The watch outlasted the claim and another run took the channel over:
            # that run renews it, so the channel just opened is closed again.
            self._service.stop_channel(sub, Channel(opened.channel_id, sub.id, ACTIVE,
                                                    resource_id=opened.resource_id))
            self._point_at_newest(sub.id)
            report.errors.append(f"{sub.id}: claim lost during the renewal")
            return Step.FAILED
        if channel.state == PENDING:
            if not self._service.move_channel(channel.id, ABANDONED):
                # Its own watch completed meanwhile (slower than the grace): two
                # active channels now; the older one goes (read again: it learnt
                # its resource id, which stopping it needs).
                doc = self._subs.channel_doc(channel.id)
                self._retire(sub, Channel(channel.id, sub.id, str(doc.get("state")),
                                          resource_id=doc.get("resource_id")))
                self._point_at_newest(sub.id)
            # Nothing delivered while this channel never opened: changes made
            # meanwhile announced nothing, so sync once more.
            self._request_sync(sub, report)
        else:
            self._retire(sub, channel)
            if channel.expiration is not None and channel.expiration <= now:
                # It lapsed before it was replaced (the renewer was down or kept
                # failing): changes made in the gap announced nothing.
                self._request_sync(sub, report)
        report.renewed += 1
        return Step.PROGRESS

    def _request_sync(self, sub: Subscription, report: RenewalReport) -> None:
        try:
            self._service.request_sync(sub.id, origin="channel")
        except CalsyncError as err:  # recorded: the sweep queues it
            report.errors.append(f"{sub.id}: sync request {type(err).__name__}")

    def _point_at_newest(self, sub_id: str) -> None:
        """Name the newest active channel as the subscription's current one."""
        active = [c for c in self._subs.delivering_channels(sub_id)
                  if c.state == ACTIVE and c.expiration is not None]
        if active:
            newest = max(active, key=lambda c: c.expiration or _NEVER)
            self._subs.update(sub_id, {"channel_id": newest.id,
                                       "channel_expiration": newest.expiration})

    def _retire(self, sub: Subscription, channel: Channel) -> None:
        """The replacement delivers now: mark the old one replaced and stop it."""
        self._service.move_channel(channel.id, REPLACED)
        # If the stop fails it expires on its own; its notifications stay accepted.
        with contextlib.suppress(CalendarError):
            self._service.stop_channel(sub, channel)

    def _retire_orphan(self, sub: Subscription | None, channel: Channel,
                       report: RenewalReport) -> None:
        if sub is not None and sub.status == ERROR:
            self._service.move_channel(channel.id, ABANDONED)
            report.abandoned += 1
            return
        try:
            if sub is not None and channel.resource_id:
                self._service.stop_channel(sub, channel)
            else:
                self._service.move_channel(channel.id, STOPPED)
        except CalendarError:
            self._service.move_channel(channel.id, ABANDONED)
        report.orphans_stopped += 1

    def _failed(self, sub: Subscription, channel: Channel, attempts: int, err: CalendarError,
                report: RenewalReport) -> None:
        """The watch failed: the new record it left `pending` (due at its next attempt)
        carries the retry, so the record it replaces leaves the renewer's queries:
        an active one becomes `replaced` (still accepted until it expires), a
        pending one `abandoned`. A refusal of the request or the calendar itself,
        `give_up_attempts` times in a row, puts the subscription in `error`."""
        self._service.move_channel(channel.id, REPLACED if channel.state == ACTIVE
                                   else ABANDONED)
        error = f"renewal failed: {type(err).__name__}: {err}"[:500]
        logs.log("WARNING" if attempts < 3 else "ERROR", "channel renewal failed",
                 subscription=channel.sub_id, channel_id=channel.id, outcome="renewal_failed",
                 attempts=attempts, error=error)
        report.failed += 1
        report.errors.append(f"{channel.sub_id}: {type(err).__name__}")
        if isinstance(err, REFUSED_WATCH_ERRORS) and attempts >= self._settings.give_up_attempts:
            reason = getattr(err, "reason", None) or "calendar_request_rejected"
            message = f"watch refused {attempts} times: {type(err).__name__}: {err}"[:500]
            if self._service.mark_error(sub, message, reason):
                report.gave_up += 1

    def _clean_up(self, now: datetime, report: RenewalReport) -> _Section:
        """Delete abandoned channel records a retention after they expired (a batch per
        run): every failed watch leaves one, and nothing delivers on them after expiry."""
        def delete(row: Row) -> Step:
            if not self._subs.delete_channel(row[0].id, ABANDONED):
                return Step.SKIPPED
            report.channels_deleted += 1
            return Step.PROGRESS

        retention = timedelta(seconds=self._settings.channel_record_retention)
        return self._channel_scan(ABANDONED, now - retention, delete, report)

    # -- requests ---------------------------------------------------------------

    def _sweep(self, now: datetime, report: RenewalReport) -> _Section:
        """Re-queue requests left without a task: a crash between commit and enqueue,
        a task that ran out of attempts. `sweep_at` is the request's sort key: the
        sweep looks at it `sweep_after` later, and moves it past whatever is still
        serving it (a run holding the lease, a rate limit's retry, a task chain whose
        runs are still coming), so one task chain at a time serves a stuck request."""
        sweep_after = timedelta(seconds=self._settings.sweep_after)
        # A chain is alive while its runs come at most the queue's longest backoff
        # apart (unset: the sweep age, so some overlap is possible).
        silence = timedelta(seconds=self._settings.task_max_backoff or self._settings.sweep_after)

        def look_again(sub: Subscription, requested: int, at: datetime) -> Step:
            moved = self._subs.update_if(sub.id, {"requested_gen": requested},
                                         {"sweep_at": max(at, now) - sweep_after})
            return Step.MOVED if moved else Step.SKIPPED

        def act(sub: Subscription, data: dict[str, Any]) -> Step:
            requested = int(data.get("requested_gen") or 0)
            if sub.status != SUB_ACTIVE:  # resuming records a new request
                cleared = self._subs.update_if(sub.id, {"status": sub.status},
                                               {"sweep_at": None})
                return Step.PROGRESS if cleared else Step.SKIPPED
            state = self._subs.writer_state(sub.id)
            if requested <= int(state.get("synced_gen") or 0):
                # Served: drop it from this query so the sweep stays proportional
                # to what is really pending (only if no new request came meanwhile).
                cleared = self._subs.clear_request_marker(sub.id, requested)
                return Step.PROGRESS if cleared else Step.SKIPPED
            lease_until = state.get("lease_until")
            if lease_until is not None and lease_until > now:
                return look_again(sub, requested, lease_until)  # its run does the follow-up
            retry_at = data.get("retry_at")
            if retry_at is not None and retry_at > now:
                return look_again(sub, requested, retry_at)  # rate limited: queued for then
            last_run = state.get("lease_started_at")
            asked = data.get("requested_at")
            if (last_run is not None and (asked is None or last_run >= asked)
                    and now - last_run < silence):
                # A run of this request started lately: its task is being retried
                # by the queue. No second chain.
                return look_again(sub, requested, last_run + silence)
            return self._requeue(sub, data, requested, last_run, now, silence, report)

        return self._subscription_scan("sweep_at", now - sweep_after, act, report)

    def _requeue(self, sub: Subscription, data: dict[str, Any], requested: int,
                 last_run: datetime | None, now: datetime, silence: timedelta,
                 report: RenewalReport) -> Step:
        """Give a stranded request a new task chain, claimed first so that of two
        renewer runs one queues it, under a name no earlier sweep of the request
        used (`sweep<n>`: Cloud Tasks would refuse a reused name, and a refused
        re-queue is no task at all). The next look waits out the new chain's
        first runs, longer each time a chain never ran at all."""
        sweep_after = timedelta(seconds=self._settings.sweep_after)
        marks = {name: data.get(name) for name in ("swept_gen", "sweeps", "sweep_level",
                                                   "swept_at")}
        same = marks["swept_gen"] == requested
        sweeps = int(marks["sweeps"] or 0) + 1 if same else 1
        chain_ran = last_run is not None and marks["swept_at"] is not None and (
            last_run >= marks["swept_at"])
        level = int(marks["sweep_level"] or 0) + 1 if same and not chain_ran else 1
        look = now + max(silence, backoff(level, sweep_after))
        if not self._subs.update_if(
                sub.id, {"requested_gen": requested, **marks},
                {"swept_gen": requested, "sweeps": sweeps, "sweep_level": level,
                 "swept_at": now, "sweep_at": look - sweep_after}):
            return Step.SKIPPED
        self._service.requeue(sub.id, requested, origin=f"sweep{sweeps}")
        report.swept += 1
        return Step.PROGRESS

    def _safety_net(self, now: datetime, report: RenewalReport) -> _Section:
        """Sync subscriptions not synced within the interval (or never). Its sort key,
        `safety_net_at`, is when it last covered the subscription (the final commit
        sets it too), so a subscription whose request is still pending moves on an
        interval and never holds the head of the query: its request is the sweep's."""
        interval = timedelta(seconds=self._settings.safety_net_interval)

        def covered(sub: Subscription, data: dict[str, Any], at: datetime | None) -> bool:
            return self._subs.update_if(sub.id, {"safety_net_at": data.get("safety_net_at")},
                                        {"safety_net_at": at})

        def act(sub: Subscription, data: dict[str, Any]) -> Step:
            if sub.status != SUB_ACTIVE:  # resuming requests a sync (and sets it again)
                return Step.PROGRESS if covered(sub, data, None) else Step.SKIPPED
            synced = data.get("last_synced_at")
            if synced is not None and synced > now - interval:
                return Step.MOVED if covered(sub, data, synced) else Step.SKIPPED
            if not covered(sub, data, now):
                return Step.SKIPPED  # another run covered it
            if data.get("requested_at") is not None:
                return Step.MOVED  # a request is recorded and not served: the sweep's
            queued = self._service.request_sync(sub.id, origin="safety")
            report.safety_net += int(queued)
            return Step.PROGRESS if queued else Step.MOVED

        return self._subscription_scan("safety_net_at", now - interval, act, report)

    def _resume_deletions(self, now: datetime, report: RenewalReport) -> _Section:
        """Finish unsubscribes that stopped midway (`deleting` for longer than the sweep
        age): nobody has to repeat the DELETE."""
        def act(sub: Subscription, data: dict[str, Any]) -> Step:
            if sub.status != DELETING:
                return Step.SKIPPED
            # Claim it: a second run (or a crash now) waits another sweep age.
            if not self._subs.update_if(sub.id, {"deleting_since": data.get("deleting_since")},
                                        {"deleting_since": now}):
                return Step.SKIPPED
            self._service.unsubscribe(sub.id)
            report.deletions_resumed += 1
            return Step.PROGRESS

        before = now - timedelta(seconds=self._settings.sweep_after)
        return self._subscription_scan("deleting_since", before, act, report)

    def _outbox_sweep(self, now: datetime, report: RenewalReport) -> _Section:
        """Queue a publishing run for subscriptions whose entries stayed unpublished
        (a run died between commit and publish, or Pub/Sub failed): DESIGN.md,
        "Delivery (outbox)"; paused subscriptions included."""
        assert self._outbox is not None
        try:
            queued, more, errors = self._outbox.sweep(
                now, self._batch, self._batch * READ_PAST_FACTOR)
        except CalsyncError as err:
            report.errors.append(f"outbox sweep: {type(err).__name__}")
            return _Section()
        report.outbox_swept += queued
        report.errors.extend(errors)
        return _Section(work=queued, progress=queued, more=more)


def _add(report: RenewalReport, **counts: int) -> None:
    for name, count in counts.items():
        setattr(report, name, getattr(report, name) + count)
