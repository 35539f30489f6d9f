"""The renewer: keeps channels open, repairs stranded requests, runs the safety net.

Every query is indexed and limited, so one invocation's work is proportional
to what is due, not to the number of subscriptions. A row's sort key is the
time it is next due, and a row the renewer cannot finish moves out of the way
(DESIGN.md, "Liveness"): a failed watch's record is due at its next attempt, a
request held by a run or a rate limit, or whose task chain still runs, is
looked at again when that ends, a subscription the safety net covered is
looked at an interval later. So however many rows are stuck, the rows behind
them are reached. Each section tries at most a batch of rows and reads a
bounded number per run (`scan.Pass.scan`); one store error fails its row or its
section, never the run. The renewer queues a continuation of itself (after a
delay, under a name derived from the time) only when a section filled its
batch AND made real progress (a channel renewed or retired, a task queued, a
record deleted; never a failure or a move).

The sections: `channel_renewal` (renewals, retries, clean-up; calendar-list
channels are handed to `account_renewal`), `request_sweeps` (the sweep, the
safety net, interrupted unsubscribes), `account_renewal`'s account sections,
and the outbox sweep.

With CALSYNC_RENEWAL_SHARDS > 1 (and a way to queue renewer tasks) a tick fans the
renewals and retries out to one task per shard (`sharding.py`: deterministic names
per shard and slot, a budget per run, continuation at the next slot only on
progress), gives old channel records their shard, and runs the other sections
itself; `run_shard` is one shard's run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from functions import logs
from functions.config import Settings
from functions.errors import CalsyncError
from functions.lifecycle.channel_renewal import ChannelRenewal
from functions.lifecycle.request_sweeps import RequestSweeps
from functions.lifecycle.scan import READ_PAST_FACTOR, Pass, RenewalReport, Section
from functions.lifecycle.sharding import (
    TICK_CONTINUATION,
    ShardBackfill,
    shard_body,
    shard_budget,
    shard_task_name,
    slot_of,
    slot_start,
)
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import ACTIVE, PENDING
from functions.ports import CallBudget, LifecycleStore

if TYPE_CHECKING:
    from functions.delivery.outbox import OutboxSweeper
    from functions.lifecycle.account_renewal import AccountRenewal

CONTINUE_AFTER = timedelta(seconds=10)

__all__ = ["CONTINUE_AFTER", "RenewalReport", "Renewer", "safety_net_batch", "safety_net_lead",
           "unsharded_budget"]


def unsharded_budget(settings: Settings) -> int:
    """Watches one renewer run without fan-out may start (renewals and retries): a
    fixed minute holds at most seven such runs, six of the continuation chain (each
    CONTINUE_AFTER after the last; a tick's continuation takes the chain's task name
    and joins it) and the tick, so seven budgets stay within
    CALSYNC_RENEWALS_PER_MINUTE, which the sync queue's rate leaves room for. (The
    run's batch alone, 200 six times a minute, let 10^6 calendars' renewals take
    2,400 calls a minute against the 2,000 set aside: issue 19.)"""
    runs = int(60 // CONTINUE_AFTER.total_seconds()) + 1
    return max(1, settings.renewals_per_minute // runs)


def safety_net_lead(settings: Settings) -> timedelta:
    """How long before its interval ends the safety net looks at a row: a continuation's
    delay, in which the sync queue dispatches the probes one run queues
    (`safety_net_batch`), so a probe's run is done by the time its row falls due and a
    look in the tick after it keeps the published bound (the longest interval plus one
    renewer tick). At most a tenth of the shortest interval (tests run intervals of
    seconds)."""
    return min(CONTINUE_AFTER, timedelta(seconds=settings.safety_net_interval) / 10)


def safety_net_batch(batch: int, sync_dispatches_per_second: float) -> int:
    """Rows the safety net probes per run (and reads, times READ_PAST_FACTOR): what the
    sync queue dispatches in the time to the run's continuation, at least the run's
    batch. Probes come due in bursts (every calendar synced at once after an outage
    or a burst of changes is due again together an interval later): at the run's batch
    of 200 the section probed at most 20 a second, a tenth of what the queue serves, so
    at 10^6 calendars due rows waited ticks for their look and the staleness bound
    failed (issue 19). Sized to the queue, a tick's looks never wait for the section
    while the queue itself keeps up, and queue no more than it dispatches before the
    next run's."""
    return max(batch, round(sync_dispatches_per_second * CONTINUE_AFTER.total_seconds()))


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
        renewer_tasks: Callable[[datetime | None, str, dict[str, Any]], None] | None = None,
        accounts: AccountRenewal | None = None,
        budget: CallBudget | None = None,
        net_batch: int | None = None,
        net_in_flight: int = 1,
    ) -> None:
        """`renewer_tasks(not_before, name, body)` queues a renewer task: with it and
        CALSYNC_RENEWAL_SHARDS > 1, ticks fan channel work out to shard tasks.
        `budget`: the owners' call budgets a renewal's watch and stop are taken from.
        `net_batch`: the safety net's batch per run (default `safety_net_batch` from the
        settings' sync queue rate; the simulation scales it with its sample).
        `net_in_flight`: the safety net's probes made at once; the deployed renewer makes
        `request_sweeps.NET_PROBES_IN_FLIGHT` (one after another, a full batch takes
        minutes against Firestore: bench/safety_net.py); 1 (the default) keeps a run
        over in-memory fakes on one thread, deterministic."""
        self._net_batch = net_batch or safety_net_batch(
            batch, settings.sync_dispatches_per_second)
        self._net_in_flight = net_in_flight
        self._budget = budget
        self._outbox = outbox
        self._tasks = renewer_tasks
        self._backfill_done = False  # once complete, never read its record again
        self._accounts = accounts  # calendar-list channels and the accounts' sections
        self._settings = settings
        self._subs = subscriptions
        self._service = service
        self._continue = continue_later
        self._batch = batch
        self._clock = clock

    @property
    def fans_out(self) -> bool:
        """Whether channel renewals and retries go to shard tasks (else the tick's)."""
        return self._tasks is not None and self._settings.renewal_shards > 1

    def run(self, fan_out: bool = True) -> RenewalReport:
        """A tick (Cloud Scheduler, the CLI): every section, or with fan-out the shard
        tasks queued (unless `fan_out` is False: the tick's own continuation) and
        every section but the shards' own."""
        report = RenewalReport()
        now = self._clock()
        run = Pass(self._settings, self._subs, self._batch, now, report,
                   claimant=uuid.uuid4().hex)
        channels = ChannelRenewal(run, self._service, self._accounts, self._budget)
        requests = RequestSweeps(run, self._service, self._net_batch,
                                 safety_net_lead(self._settings), self._net_in_flight)
        passes: list[tuple[str, Callable[[], Section]]]
        if self.fans_out:
            passes = [("backfill", lambda: self._backfill(run))]
            if fan_out:
                passes.append(("fan-out", lambda: self._fan_out(now, report)))
        else:
            # Within the run's batch too, as before the budget (tests set small ones).
            passes = self._renewals(channels, now, None, unsharded_budget(self._settings),
                                    cap=self._batch)
        passes += [
            ("cleanup", channels.clean_up),
            ("sweep", requests.sweep),
            ("safety net", requests.safety_net),
            ("deletions", requests.resume_deletions),
        ]
        if self._accounts is not None:
            passes.extend(self._accounts.sections(run))
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
        if any(s.more and s.progress for s in sections):
            bucket = int(now.timestamp() // CONTINUE_AFTER.total_seconds())
            try:
                if self.fans_out:
                    assert self._tasks is not None
                    self._tasks(now + CONTINUE_AFTER, f"renew-{bucket}", TICK_CONTINUATION)
                    report.continued = True
                elif self._continue is not None:
                    self._continue(now + CONTINUE_AFTER, f"renew-{bucket}")
                    report.continued = True
            except CalsyncError as err:  # the next scheduler tick continues anyway
                report.errors.append(f"continuation: {type(err).__name__}")
        self._log(report)
        return report

    def run_shard(self, shard: int, shards: int) -> RenewalReport:
        """One shard's run: its due retries, then its due renewals, at most its budget of
        watches (retries at most half of it, so renewals always get a share); continued at the next
        slot, under the name the next tick gives it, only if a section filled its
        part and made real progress."""
        report = RenewalReport(shard=shard, shards=shards)
        now = self._clock()
        run = Pass(self._settings, self._subs, self._batch, now, report,
                   claimant=uuid.uuid4().hex)
        channels = ChannelRenewal(run, self._service, self._accounts, self._budget)
        sections: list[Section] = []
        for name, section in self._renewals(channels, now, (shard, shards),
                                            shard_budget(self._settings, shards)):
            try:
                sections.append(section())
            except CalsyncError as err:
                report.errors.append(f"{name}: {type(err).__name__}")
        if self._tasks is not None and any(s.more and s.progress for s in sections):
            following = slot_of(now, self._settings) + 1
            try:
                self._tasks(slot_start(following, self._settings),
                            shard_task_name(shard, shards, following), shard_body(shard, shards))
                report.continued = True
            except CalsyncError as err:  # the next tick queues this shard anyway
                report.errors.append(f"continuation: {type(err).__name__}")
        self._log(report)
        return report

    def _renewals(self, channels: ChannelRenewal, now: datetime, shard: tuple[int, int] | None,
                  budget: int, cap: int | None = None) -> list[tuple[str, Callable[[], Section]]]:
        """Due retries, then due renewals, at most `budget` watches in all: retries at
        most half of it (a pending record is a subscription with nothing delivering),
        renewals what the retries left, so they always get a share; each section at
        most `cap` rows."""
        window = timedelta(seconds=self._settings.renewal_window)
        retried: list[Section] = []

        def share(watches: int) -> int:
            return max(1, watches if cap is None else min(cap, watches))

        def retry() -> Section:
            retried.append(channels.renew_due(PENDING, now, shard, share(budget // 2)))
            return retried[-1]

        def renew() -> Section:
            left = budget - sum(s.work for s in retried)
            return channels.renew_due(ACTIVE, now + window, shard, share(left))

        return [("retry", retry), ("renewal", renew)]

    def _fan_out(self, now: datetime, report: RenewalReport) -> Section:
        """One task per shard for this slot; a name already used (a repeated tick, a
        continuation) is Cloud Tasks' AlreadyExists, which the queue takes as done."""
        assert self._tasks is not None
        shards = self._settings.renewal_shards
        slot = slot_of(now, self._settings)
        for shard in range(shards):
            try:
                self._tasks(None, shard_task_name(shard, shards, slot), shard_body(shard, shards))
                report.fanned_out += 1
            except CalsyncError as err:  # that shard waits for the next tick
                report.errors.append(f"fan-out {shard}: {type(err).__name__}")
        return Section()  # queueing is not work that continues

    def _backfill(self, run: Pass) -> Section:
        if self._backfill_done:
            return Section()
        grace = timedelta(seconds=self._settings.dispatch_deadline)
        section, self._backfill_done = ShardBackfill(run, grace).step()
        return section

    def _log(self, report: RenewalReport) -> None:
        counts = {k: v for k, v in report.to_json().items()
                  if k not in ("errors", "oldest_pending_age_s", "oldest_outbox_age_s")}
        # `oldest_pending_age_s` feeds the alert on requests left waiting,
        # `oldest_outbox_age_s` the one on entries left unpublished.
        logs.log("INFO", "renewer run", outcome="done", **counts,
                 oldest_pending_age_s=report.oldest_pending_age_s,
                 oldest_outbox_age_s=report.oldest_outbox_age_s,
                 error_count=len(report.errors))

    def _outbox_sweep(self, now: datetime, report: RenewalReport) -> Section:
        """Queue a publishing run for subscriptions whose entries stayed unpublished
        (a run died between commit and publish, or Pub/Sub failed): DESIGN.md,
        "Delivery (outbox)"; paused subscriptions included."""
        assert self._outbox is not None
        try:
            report.oldest_outbox_age_s = self._outbox.oldest_pending_age(now)
            queued, more, errors = self._outbox.sweep(
                now, self._batch, self._batch * READ_PAST_FACTOR)
        except CalsyncError as err:
            report.errors.append(f"outbox sweep: {type(err).__name__}")
            return Section()
        report.outbox_swept += queued
        report.errors.extend(errors)
        return Section(work=queued, progress=queued, more=more)
