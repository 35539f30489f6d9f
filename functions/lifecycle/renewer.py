"""The renewer: keeps channels open, repairs stranded requests, runs the safety net.

Every query is indexed and limited, so one invocation's work is proportional
to what is due, not to the number of subscriptions. Rows it cannot act on
yet (a channel backing off, a request already pending) are read past, a
bounded number per run, so they neither starve the rows behind them nor make
the renewer fan out: it queues a continuation of itself (after a delay, under
a name derived from the time) only when a section filled its batch AND made
progress. Every action on a channel starts with a conditional claim, so two
renewer runs never renew one channel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from functions import logs
from functions.config import Settings
from functions.errors import CalendarError, CalsyncError, CredentialsRejected
from functions.lifecycle.subscriptions import SubscriptionService, backoff
from functions.model import (
    ABANDONED,
    ACTIVE,
    ERROR,
    PENDING,
    REPLACED,
    STOPPED,
    Channel,
    Subscription,
)
from functions.model import ACTIVE as SUB_ACTIVE
from functions.ports import LifecycleStore

if TYPE_CHECKING:
    from functions.delivery.outbox import OutboxSweeper

CLAIM_SPAN = timedelta(minutes=2)  # a claim outlives any one renewal
CONTINUE_AFTER = timedelta(seconds=10)
READ_PAST_FACTOR = 5  # rows read per section and run, at most, in batches


@dataclass
class RenewalReport:
    renewed: int = 0
    retired: int = 0  # channels already replaced (a renewal that crashed midway)
    failed: int = 0
    orphans_stopped: int = 0
    abandoned: int = 0
    swept: int = 0
    safety_net: int = 0
    outbox_swept: int = 0  # publishing runs queued for entries left unpublished
    channel_reads: int = 0
    subscription_reads: int = 0
    oldest_pending_age_s: float | None = None
    # Seconds since the oldest `publish_pending_since` (null: nothing waits); logged
    # on "renewer run" for the outbox-age alert.
    oldest_outbox_age_s: float | None = None
    continued: bool = False
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Section:
    """One section's pass: how many rows it acted on, whether more may be due."""

    progress: int = 0
    more: bool = False


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

    def run(self) -> RenewalReport:
        report = RenewalReport()
        now = self._clock()
        window = timedelta(seconds=self._settings.renewal_window)
        sections = [self._renew_due(state, before, now, report)
                    for state, before in ((ACTIVE, now + window), (PENDING, now))]
        sections.append(self._sweep(now, report))
        sections.append(self._safety_net(now, report))
        if self._outbox is not None:
            sections.append(self._outbox_sweep(now, report))
        oldest = self._subs.oldest_request()
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

    # -- channels -------------------------------------------------------------

    def _renew_due(self, state: str, before: datetime, now: datetime,
                   report: RenewalReport) -> _Section:
        """Act on up to a batch of due channels, reading past those backing off."""
        section, after, reads = _Section(), None, 0
        while reads < self._batch * READ_PAST_FACTOR:
            due = self._subs.due_channels(state, before, self._batch, after)
            report.channel_reads += len(due)
            reads += len(due)
            for channel, doc in due:
                if section.progress >= self._batch:
                    section.more = True
                    return section
                section.progress += self._renew(channel, doc, now, report)
            if len(due) < self._batch:
                return section
            after = due[-1][0].id
        section.more = True
        return section

    def _renew(self, channel: Channel, doc: dict[str, Any], now: datetime,
               report: RenewalReport) -> int:
        """Handle one due channel; 0 if it is backing off or another run has it."""
        next_attempt = doc.get("next_attempt_at")
        if next_attempt is not None and next_attempt > now:
            return 0
        if not self._subs.claim_channel(channel.id, channel.state, now, now + CLAIM_SPAN):
            return 0
        found = self._subs.get(channel.sub_id)
        report.subscription_reads += 1
        sub = found[0] if found else None
        if sub is None or sub.status != SUB_ACTIVE:
            self._retire_orphan(sub, channel, report)
            return 1
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
            return 1
        if channel.state == PENDING and others:
            self._subs.set_channel(channel.id, {"state": ABANDONED})
            report.retired += 1
            return 1
        try:
            self._service.open_channel(sub, replacing=channel)
        except CredentialsRejected as err:
            self._service.mark_error(sub, f"credentials rejected: {err}", err.reason)
            report.abandoned += 1
            report.errors.append(f"{sub.id}: credentials rejected")
            return 1
        except CalendarError as err:
            self._back_off(channel, doc, now, err, report)
            return 1
        if channel.state == PENDING:
            # Nothing delivered while this channel never opened: changes made
            # meanwhile announced nothing, so sync once more.
            self._subs.set_channel(channel.id, {"state": ABANDONED})
            with contextlib.suppress(CalsyncError):
                self._service.request_sync(sub.id, origin="channel")
        else:
            self._retire(sub, channel)
        report.renewed += 1
        return 1

    def _retire(self, sub: Subscription, channel: Channel) -> None:
        """The replacement delivers now: mark the old one replaced and stop it."""
        self._subs.set_channel(channel.id, {"state": REPLACED})
        # If the stop fails it expires on its own; its notifications stay accepted.
        with contextlib.suppress(CalendarError):
            self._service.stop_channel(sub, channel)

    def _retire_orphan(self, sub: Subscription | None, channel: Channel,
                       report: RenewalReport) -> None:
        if sub is not None and sub.status == ERROR:
            self._subs.set_channel(channel.id, {"state": ABANDONED})
            report.abandoned += 1
            return
        try:
            if sub is not None and channel.resource_id:
                self._service.stop_channel(sub, channel)
            else:
                self._subs.set_channel(channel.id, {"state": STOPPED})
        except CalendarError:
            self._subs.set_channel(channel.id, {"state": ABANDONED})
        report.orphans_stopped += 1

    def _back_off(self, channel: Channel, doc: dict[str, Any], now: datetime,
                  err: CalendarError, report: RenewalReport) -> None:
        attempts = int(doc.get("renewal_attempts") or 0) + 1
        error = f"renewal failed: {type(err).__name__}: {err}"[:500]
        self._subs.set_channel(channel.id, {
            "renewal_attempts": attempts, "claimed_until": None,
            "next_attempt_at": now + backoff(attempts, self._service.first_backoff),
            "last_error": error,
        })
        logs.log("WARNING" if attempts < 3 else "ERROR", "channel renewal failed",
                 subscription=channel.sub_id, channel_id=channel.id, outcome="renewal_failed",
                 attempts=attempts, error=error)
        report.failed += 1
        report.errors.append(f"{channel.sub_id}: {type(err).__name__}")

    # -- requests ---------------------------------------------------------------

    def _sweep(self, now: datetime, report: RenewalReport) -> _Section:
        """Re-queue requests pending longer than the sweep age with no run on them."""
        before = now - timedelta(seconds=self._settings.sweep_after)
        bucket = int(now.timestamp() // max(self._settings.sweep_after, 1))

        def act(sub: Subscription, data: dict[str, Any]) -> bool:
            state = self._subs.writer_state(sub.id)
            requested = int(data.get("requested_gen") or 0)
            if requested <= int(state.get("synced_gen") or 0):
                # Served: drop it from this query so the sweep stays proportional
                # to what is really pending (only if no new request came meanwhile).
                return self._subs.clear_request_marker(sub.id, requested)
            lease_until = state.get("lease_until")
            if lease_until is not None and lease_until > now:
                return False  # a run holds it and will enqueue the follow-up itself
            retry_at = data.get("retry_at")
            if retry_at is not None and retry_at > now:
                return False  # rate limited: its retry task is queued for then
            self._service.requeue(sub.id, requested, origin=f"sweep{bucket}")
            report.swept += 1
            return True

        return self._scan("requested_at", before, False, act, report)

    def _safety_net(self, now: datetime, report: RenewalReport) -> _Section:
        """Sync subscriptions not synced within the interval, or never synced."""
        before = now - timedelta(seconds=self._settings.safety_net_interval)

        def act(sub: Subscription, _: dict[str, Any]) -> bool:
            queued = self._service.request_sync(sub.id, origin="safety")
            report.safety_net += int(queued)
            return queued

        return self._scan("last_synced_at", before, True, act, report)

    def _outbox_sweep(self, now: datetime, report: RenewalReport) -> _Section:
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
            return _Section()
        report.outbox_swept += queued
        report.errors.extend(errors)
        return _Section(progress=queued, more=more)

    def _scan(self, field_name: str, before: datetime, include_null: bool,
              act: Callable[[Subscription, dict[str, Any]], bool],
              report: RenewalReport) -> _Section:
        section, after, reads = _Section(), None, 0
        while reads < self._batch * READ_PAST_FACTOR:
            due = self._subs.subscriptions_where(field_name, before, self._batch, after,
                                                 include_null=include_null)
            report.subscription_reads += len(due)
            reads += len(due)
            for sub, data in due:
                if section.progress >= self._batch:
                    section.more = True
                    return section
                try:
                    section.progress += int(act(sub, data))
                except CalsyncError as err:  # left recorded: a later run or sweep serves it
                    report.errors.append(f"{sub.id}: {type(err).__name__}")
            if len(due) < self._batch:
                return section
            after = due[-1][0].id
        section.more = True
        return section
