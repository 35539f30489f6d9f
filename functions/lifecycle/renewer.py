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
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from functions import logs
from functions.config import Settings
from functions.errors import CalsyncError
from functions.lifecycle.channel_renewal import ChannelRenewal
from functions.lifecycle.request_sweeps import RequestSweeps
from functions.lifecycle.scan import READ_PAST_FACTOR, Pass, RenewalReport, Section
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import ACTIVE, PENDING
from functions.ports import LifecycleStore

if TYPE_CHECKING:
    from functions.delivery.outbox import OutboxSweeper
    from functions.lifecycle.account_renewal import AccountRenewal

CONTINUE_AFTER = timedelta(seconds=10)

__all__ = ["CONTINUE_AFTER", "RenewalReport", "Renewer"]


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
        accounts: AccountRenewal | None = None,
    ) -> None:
        self._outbox = outbox
        self._accounts = accounts  # calendar-list channels and the accounts' sections
        self._settings = settings
        self._subs = subscriptions
        self._service = service
        self._continue = continue_later
        self._batch = batch
        self._clock = clock

    def run(self) -> RenewalReport:
        report = RenewalReport()
        now = self._clock()
        run = Pass(self._settings, self._subs, self._batch, now, report,
                   claimant=uuid.uuid4().hex)
        channels = ChannelRenewal(run, self._service, self._accounts)
        requests = RequestSweeps(run, self._service)
        window = timedelta(seconds=self._settings.renewal_window)
        passes: list[tuple[str, Callable[[], Section]]] = [
            ("renewal", lambda: channels.renew_due(ACTIVE, now + window)),
            ("retry", lambda: channels.renew_due(PENDING, now)),
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

    def _outbox_sweep(self, now: datetime, report: RenewalReport) -> Section:
        """Queue a publishing run for subscriptions whose entries stayed unpublished
        (a run died between commit and publish, or Pub/Sub failed): DESIGN.md,
        "Delivery (outbox)"; paused subscriptions included."""
        assert self._outbox is not None
        try:
            queued, more, errors = self._outbox.sweep(
                now, self._batch, self._batch * READ_PAST_FACTOR)
        except CalsyncError as err:
            report.errors.append(f"outbox sweep: {type(err).__name__}")
            return Section()
        report.outbox_swept += queued
        report.errors.extend(errors)
        return Section(work=queued, progress=queued, more=more)
