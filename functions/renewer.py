"""The renewer: keeps channels open, repairs stranded requests, runs the safety net.

Every query is indexed and limited, so one invocation's work is proportional
to what is due, not to the number of subscriptions; when a limit is reached
the renewer queues a continuation of itself through Cloud Tasks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions import logs
from functions.channel_store import ABANDONED, ACTIVE, PENDING, REPLACED, STOPPED, Channel
from functions.config import Settings
from functions.errors import CalendarError, CredentialsRejected
from functions.model import ACTIVE as SUB_ACTIVE
from functions.model import ERROR, Subscription
from functions.subscription_store import SubscriptionStore
from functions.subscriptions import SubscriptionService

MAX_BACKOFF = timedelta(hours=1)
FIRST_BACKOFF = timedelta(minutes=1)


@dataclass
class RenewalReport:
    renewed: int = 0
    failed: int = 0
    orphans_stopped: int = 0
    abandoned: int = 0
    swept: int = 0
    safety_net: int = 0
    channel_reads: int = 0
    subscription_reads: int = 0
    continued: bool = False
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Renewer:
    def __init__(
        self,
        settings: Settings,
        subscriptions: SubscriptionStore,
        service: SubscriptionService,
        continue_later: Callable[[], None] | None = None,
        batch: int = 200,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
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
        full = False
        for state, before in ((ACTIVE, now + window), (PENDING, now)):
            full |= self._renew_due(state, before, now, report)
        full |= self._sweep(now, report)
        full |= self._safety_net(now, report)
        if full and self._continue is not None:
            self._continue()
            report.continued = True
        logs.log("INFO", "renewer run", **{k: v for k, v in report.to_json().items()
                                          if k != "errors"}, error_count=len(report.errors))
        return report

    # -- channels -------------------------------------------------------------

    def _renew_due(self, state: str, before: datetime, now: datetime,
                   report: RenewalReport) -> bool:
        """Renew up to a batch of due channels; True if more may be due.

        Channels backing off after a failure are read past, not counted, so a
        crowd of failing channels at the head of the query neither starves the
        ones behind it nor makes the renewer fan out forever.
        """
        handled, after = 0, None
        while True:
            due = self._subs.due_channels(state, before, self._batch, after)
            report.channel_reads += len(due)
            for channel, doc in due:
                if handled >= self._batch:
                    return True
                handled += self._renew(channel, doc, now, report)
            if len(due) < self._batch:
                return False
            after = due[-1][0].id

    def _renew(self, channel: Channel, doc: dict[str, Any], now: datetime,
               report: RenewalReport) -> int:
        """Handle one due channel; 0 if it is backing off, else 1."""
        next_attempt = doc.get("next_attempt_at")
        if next_attempt is not None and next_attempt > now:
            return 0
        found = self._subs.get(channel.sub_id)
        report.subscription_reads += 1
        sub = found[0] if found else None
        if sub is None or sub.status != SUB_ACTIVE:
            self._retire_orphan(sub, channel, report)
            return 1
        try:
            self._service.open_channel(sub)
        except CredentialsRejected as err:
            self._service.mark_error(sub, f"credentials rejected: {err}")
            report.abandoned += 1
            report.errors.append(f"{sub.id}: credentials rejected")
            return 1
        except CalendarError as err:
            self._back_off(channel, doc, now, err, report)
            return 1
        # The replacement delivers now; retire the old one (pending ones never opened).
        if channel.state == PENDING:
            self._subs.set_channel(channel.id, {"state": ABANDONED})
        else:
            self._subs.set_channel(channel.id, {"state": REPLACED})
            # If the stop fails it expires on its own; its notifications stay accepted.
            with contextlib.suppress(CalendarError):
                self._service.stop_channel(sub, channel)
        report.renewed += 1
        return 1

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
        delay = min(FIRST_BACKOFF * (2 ** (attempts - 1)), MAX_BACKOFF)
        self._subs.set_channel(channel.id, {
            "renewal_attempts": attempts, "next_attempt_at": now + delay,
            "last_error": f"renewal failed: {type(err).__name__}: {err}"[:500],
        })
        report.failed += 1
        report.errors.append(f"{channel.sub_id}: {type(err).__name__}")

    # -- requests ---------------------------------------------------------------

    def _sweep(self, now: datetime, report: RenewalReport) -> bool:
        """Re-queue requests pending longer than the sweep age with no run on them."""
        before = now - timedelta(seconds=self._settings.sweep_after)
        due = self._subs.subscriptions_where("requested_at", before, self._batch)
        report.subscription_reads += len(due)
        bucket = int(now.timestamp() // max(self._settings.sweep_after, 1))
        for sub, data in due:
            state = self._subs.writer_state(sub.id)
            requested = int(data.get("requested_gen") or 0)
            if requested <= int(state.get("synced_gen") or 0):
                # Served: drop it from this query so the sweep stays proportional
                # to what is really pending (only if no new request came meanwhile).
                self._subs.clear_request_marker(sub.id, requested)
                continue
            lease_until = state.get("lease_until")
            if lease_until is not None and lease_until > now:
                continue  # a run holds it and will enqueue the follow-up itself
            self._service.requeue(sub.id, requested, origin=f"sweep{bucket}")
            report.swept += 1
        return len(due) >= self._batch

    def _safety_net(self, now: datetime, report: RenewalReport) -> bool:
        """Sync subscriptions not synced within the interval (dropped notifications)."""
        before = now - timedelta(seconds=self._settings.safety_net_interval)
        due = self._subs.subscriptions_where("last_synced_at", before, self._batch)
        report.subscription_reads += len(due)
        for sub, _ in due:
            if self._service.request_sync(sub.id, origin="safety"):
                report.safety_net += 1
        return len(due) >= self._batch
