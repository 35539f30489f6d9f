"""The renewer's channel sections (DESIGN.md, "Channels"): renew active channels before
they expire, retry pending records whose watch failed or never completed, delete
abandoned records a retention after they expired.

A pending record's `expiration` is when it is next due, so a watch that keeps
failing moves out of the way of the others. Every action starts with a
conditional claim, checked again after the watch: two runs never renew one
channel. States only move forward (`SubscriptionService.move_channel`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from functions import logs
from functions.errors import (
    CalendarError,
    CalendarGone,
    CalendarRequestRejected,
    CalsyncError,
    CredentialsRejected,
)
from functions.lifecycle.scan import Pass, Section, Step
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import (
    ABANDONED,
    ACTIVE,
    CALENDAR_LIST_KIND,
    ERROR,
    PENDING,
    REPLACED,
    STOPPED,
    Channel,
    Subscription,
)
from functions.model import ACTIVE as SUB_ACTIVE
from functions.ports import CallBudget

if TYPE_CHECKING:
    from functions.lifecycle.account_renewal import AccountRenewal

# Watch errors about the request or the calendar itself, not a passing failure:
# after `give_up_attempts` in a row the subscription goes to `error`.
REFUSED_WATCH_ERRORS = (CalendarRequestRejected, CalendarGone)
_NEVER = datetime.min.replace(tzinfo=UTC)
RENEWAL_CALLS = 2  # events.watch for the new channel, channels.stop for the old
STOP_CALLS = 1  # channels.stop of an orphan (its subscription gone or not active)


class ChannelRenewal:
    def __init__(self, run: Pass, service: SubscriptionService,
                 accounts: AccountRenewal | None = None,
                 budget: CallBudget | None = None) -> None:
        self._budget = budget  # the owners' call budgets (a renewal: a watch and a stop)
        self._run = run
        self._subs = run.subs
        self._service = service
        self._settings = run.settings
        self._report = run.report
        self._accounts = accounts  # renews the `calendar_list` channels the queries find

    def renew_due(self, state: str, before: datetime, shard: tuple[int, int] | None = None,
                  batch: int | None = None) -> Section:
        """Renew active channels expiring within the window; retry pending records
        whose watch failed or never completed (their expiration is when they are due).
        `shard` = (k, n): only fan-out shard k of n; `batch`: at most this many tries
        (a shard's budget) instead of the run's batch."""
        run = self._run if batch is None else replace(self._run, batch=batch)
        return run.channels(state, before, self._renew, shard)

    def clean_up(self) -> Section:
        """Delete abandoned channel records a retention after they expired (a batch per
        run): every failed watch leaves one, and nothing delivers on them after expiry."""
        def delete(channel: Channel, _: dict[str, Any]) -> Step:
            if not self._subs.delete_channel(channel.id, ABANDONED):
                return Step.SKIPPED
            self._report.channels_deleted += 1
            return Step.PROGRESS

        retention = timedelta(seconds=self._settings.channel_record_retention)
        return self._run.channels(ABANDONED, self._run.now - retention, delete)

    def _renew(self, channel: Channel, doc: dict[str, Any]) -> Step:
        """Handle one due channel (an account's calendar-list channel: its account's)."""
        if channel.kind == CALENDAR_LIST_KIND:
            if self._accounts is None:  # nobody here can watch a list: not ours to touch
                return Step.FAILED
            return self._accounts.renew_channel(self._run, channel, doc)
        now, report = self._run.now, self._report
        next_attempt = doc.get("next_attempt_at")
        if next_attempt is not None and next_attempt > now:
            return Step.SKIPPED  # a record from before sort keys moved: due later
        claimed = doc.get("claimed_until")
        if claimed is not None and claimed > now:
            return Step.SKIPPED  # another run is renewing it
        claim_until = now + timedelta(seconds=self._settings.channel_claim)
        # Conditioned on the row as the query returned it: no read unless someone
        # wrote the record since.
        if not self._subs.claim_channel(channel.id, channel.state, now, claim_until,
                                        self._run.claimant, version=channel.version):
            return Step.SKIPPED
        channel = replace(channel, version=None)  # our claim wrote it since
        found = self._subs.get(channel.sub_id)
        report.subscription_reads += 1
        sub = found[0] if found else None
        if sub is None or sub.status != SUB_ACTIVE:
            self._retire_orphan(sub, channel)
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
        if self._budget is not None and self._budget.take(
                sub.owner, sub.id, RENEWAL_CALLS, now, book=False) is not None:
            # The owner's budget is short (a renewal peak of an owner with many
            # calendars): the claim is given back, so the next run renews it (inside
            # the window) rather than whichever run comes after the claim lapses.
            self._subs.move_channel(channel.id, (channel.state,),
                                    {"claimed_until": None, "claimed_by": None})
            report.over_budget += 1
            return Step.SKIPPED
        attempts = int(doc.get("renewal_attempts") or 0)
        try:
            opened = self._service.open_channel(sub, attempts=attempts)
        except CredentialsRejected as err:
            self._service.mark_error(sub, f"credentials rejected: {err}", err.reason)
            report.abandoned += 1
            report.errors.append(f"{sub.id}: credentials rejected")
            return Step.PROGRESS
        except CalendarError as err:
            self._failed(sub, channel, attempts + 1, err)
            return Step.FAILED
        if opened is None:
            return Step.FAILED  # paused or unsubscribed while the watch ran: closed again
        # One read of the old channel: is the claim still ours, and (its version) the
        # condition of its state change below.
        held = self._subs.claim_held(channel.id, self._run.claimant)
        if held is None:
            # The watch outlasted the claim and another run took the channel over:
            # that run renews it, so the channel just opened is closed again.
            self._service.stop_channel(sub, Channel(opened.channel_id, sub.id, ACTIVE,
                                                    resource_id=opened.resource_id))
            self._point_at_newest(sub.id)
            report.errors.append(f"{sub.id}: claim lost during the renewal")
            return Step.FAILED
        if channel.state == PENDING:
            if not self._service.move_channel(channel.id, ABANDONED, seen=held):
                # Its own watch completed meanwhile (slower than the grace): two
                # active channels now; the older one goes (read again: it learnt
                # its resource id, which stopping it needs).
                fresh = self._subs.channel_doc(channel.id)
                self._retire(sub, Channel(channel.id, sub.id, str(fresh.get("state")),
                                          resource_id=fresh.get("resource_id")))
                self._point_at_newest(sub.id)
            # Nothing delivered while this channel never opened: changes made
            # meanwhile announced nothing, so sync once more.
            self._request_sync(sub)
        else:
            self._retire(sub, held)
            if channel.expiration is not None and channel.expiration <= now:
                # It lapsed before it was replaced (the renewer was down or kept
                # failing): changes made in the gap announced nothing.
                self._request_sync(sub)
        report.renewed += 1
        return Step.PROGRESS

    def _request_sync(self, sub: Subscription) -> None:
        try:
            self._service.request_sync(sub.id, origin="channel")
        except CalsyncError as err:  # recorded: the sweep queues it
            self._report.errors.append(f"{sub.id}: sync request {type(err).__name__}")

    def _point_at_newest(self, sub_id: str) -> None:
        """Name the newest active channel as the subscription's current one."""
        active = [c for c in self._subs.delivering_channels(sub_id)
                  if c.state == ACTIVE and c.expiration is not None]
        if active:
            newest = max(active, key=lambda c: c.expiration or _NEVER)
            self._subs.update(sub_id, {"channel_id": newest.id,
                                       "channel_expiration": newest.expiration})

    def _retire(self, sub: Subscription, channel: Channel) -> None:
        """The replacement delivers now: stop the old one (then `stopped`), or if the
        stop fails mark it `replaced`: it expires on its own, and its notifications
        stay accepted until then."""
        try:
            self._service.stop_channel(sub, channel)
        except CalendarError:
            self._service.move_channel(channel.id, REPLACED)

    def _retire_orphan(self, sub: Subscription | None, channel: Channel) -> None:
        if sub is not None and sub.status == ERROR:
            self._service.move_channel(channel.id, ABANDONED)
            self._report.abandoned += 1
            return
        if sub is not None and channel.resource_id and self._budget is not None and \
                self._budget.take(sub.owner, sub.id, STOP_CALLS, self._run.now,
                                  book=False) is not None:
            # The owner's budget is short: no stop; the channel expires on its own at
            # Google, and its pushes are refused meanwhile (not a delivering state).
            self._service.move_channel(channel.id, ABANDONED)
            self._report.over_budget += 1
            return
        try:
            if sub is not None and channel.resource_id:
                self._service.stop_channel(sub, channel)
            else:
                self._service.move_channel(channel.id, STOPPED)
        except CalendarError:
            self._service.move_channel(channel.id, ABANDONED)
        self._report.orphans_stopped += 1

    def _failed(self, sub: Subscription, channel: Channel, attempts: int,
                err: CalendarError) -> None:
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
        self._report.failed += 1
        self._report.errors.append(f"{channel.sub_id}: {type(err).__name__}")
        if isinstance(err, REFUSED_WATCH_ERRORS) and attempts >= self._settings.give_up_attempts:
            reason = getattr(err, "reason", None) or "calendar_request_rejected"
            message = f"watch refused {attempts} times: {type(err).__name__}: {err}"[:500]
            if self._service.mark_error(sub, message, reason):
                self._report.gave_up += 1
