"""The renewer's work on accounts (DESIGN.md, "Liveness"): calendar-list channels are
renewed and retried like a subscription's, and the accounts' requests have their
sweep, their safety net and their unfinished deletions; removed subscriptions
are purged once their retention ended.

Channels of both kinds come out of the same query (state and expiration); the
channel section hands a `calendar_list` one to `renew_channel`. The account
sections scan accounts by sort keys that say when each is next due (`sweep_at`,
`safety_net_at`, `deleting_since`), moved past whatever they cannot finish, so
rows stuck behind never starve the others; the purge scans subscriptions by
`purge_at`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from functions import logs
from functions.errors import (
    CalendarError,
    CalendarGone,
    CalendarRequestRejected,
    CalsyncError,
    CredentialsRejected,
)
from functions.lifecycle.account_channels import AccountChannels
from functions.lifecycle.accounts import AccountService
from functions.lifecycle.scan import Pass, Section, Step
from functions.lifecycle.subscriptions import SubscriptionService, backoff
from functions.model import (
    ABANDONED,
    ACTIVE,
    DELETING,
    ERROR,
    PENDING,
    REMOVED,
    REPLACED,
    STOPPED,
    Account,
    Channel,
    Subscription,
)
from functions.ports import AccountStore, RowCursor

# As for a subscription's watch: refusals of the request itself, not passing failures.
REFUSED_WATCH_ERRORS = (CalendarRequestRejected, CalendarGone)


class AccountRenewal:
    def __init__(self, accounts: AccountStore, service: AccountService,
                 subscriptions: SubscriptionService) -> None:
        self._accounts = accounts
        self._service = service
        self._channels: AccountChannels = service.channels
        self._subscriptions = subscriptions

    # -- calendar-list channels ------------------------------------------------------

    def renew_channel(self, run: Pass, channel: Channel, doc: dict[str, Any]) -> Step:
        """Renew a calendar-list channel about to expire, or retry a pending record whose
        watch failed: the rules of `channel_renewal.ChannelRenewal._renew`."""
        now, report, settings = run.now, run.report, run.settings
        next_attempt = doc.get("next_attempt_at")
        if next_attempt is not None and next_attempt > now:
            return Step.SKIPPED
        claim_until = now + timedelta(seconds=settings.channel_claim)
        if not run.subs.claim_channel(channel.id, channel.state, now, claim_until,
                                      run.claimant):
            return Step.SKIPPED
        found = self._accounts.get(channel.account_id or "")
        account = found[0] if found else None
        if account is None or account.status != ACTIVE:
            self._retire_orphan(run, account, channel)
            return Step.PROGRESS
        others = [c for c in self._accounts.delivering_channels(account.id) if c.id != channel.id]
        window_end = now + timedelta(seconds=settings.renewal_window)
        if channel.state == ACTIVE and any(
                o.state == ACTIVE and o.expiration is not None and o.expiration > window_end
                for o in others):
            self._retire(account, channel)  # a renewal that crashed midway
            report.retired += 1
            return Step.PROGRESS
        if channel.state == PENDING and others:
            self._channels.move_channel(channel.id, ABANDONED)
            report.retired += 1
            return Step.PROGRESS
        attempts = int(doc.get("renewal_attempts") or 0)
        try:
            opened = self._channels.open_channel(account, attempts=attempts)
        except CredentialsRejected as err:
            self._channels.mark_error(account, f"credentials rejected: {err}", err.reason)
            report.abandoned += 1
            report.errors.append(f"account {account.id}: credentials rejected")
            return Step.PROGRESS
        except CalendarError as err:
            self._failed(run, account, channel, attempts + 1, err)
            return Step.FAILED
        if opened is None:
            return Step.FAILED
        if run.subs.claim_held(channel.id, run.claimant) is None:
            self._channels.stop_channel(account, Channel(
                opened.channel_id, "", ACTIVE, resource_id=opened.resource_id,
                kind=channel.kind, account_id=account.id))
            report.errors.append(f"account {account.id}: claim lost during the renewal")
            return Step.FAILED
        if channel.state == PENDING:
            if not self._channels.move_channel(channel.id, ABANDONED):
                fresh = run.subs.channel_doc(channel.id)
                self._retire(account, Channel(channel.id, "", str(fresh.get("state")),
                                              resource_id=fresh.get("resource_id"),
                                              kind=channel.kind, account_id=account.id))
            self._request_list(run, account)  # nothing delivered meanwhile
        else:
            self._retire(account, channel)
            if channel.expiration is not None and channel.expiration <= now:
                self._request_list(run, account)  # it lapsed: list changes announced nothing
        report.renewed += 1
        return Step.PROGRESS

    def _request_list(self, run: Pass, account: Account) -> None:
        try:
            self._service.request_list_sync(account.id, origin="channel")
        except CalsyncError as err:  # recorded: the sweep queues it
            run.report.errors.append(f"account {account.id}: list request {type(err).__name__}")

    def _retire(self, account: Account, channel: Channel) -> None:
        try:
            self._channels.stop_channel(account, channel)
        except CalendarError:
            self._channels.move_channel(channel.id, REPLACED)

    def _retire_orphan(self, run: Pass, account: Account | None, channel: Channel) -> None:
        if account is not None and account.status == ERROR:
            self._channels.move_channel(channel.id, ABANDONED)
            run.report.abandoned += 1
            return
        try:
            if account is not None and channel.resource_id:
                self._channels.stop_channel(account, channel)
            else:
                self._channels.move_channel(channel.id, STOPPED)
        except CalendarError:
            self._channels.move_channel(channel.id, ABANDONED)
        run.report.orphans_stopped += 1

    def _failed(self, run: Pass, account: Account, channel: Channel, attempts: int,
                err: CalendarError) -> None:
        """The new pending record carries the retry; the old one leaves the queries. A
        refused watch, `give_up_attempts` times in a row, puts the account in `error`."""
        self._channels.move_channel(channel.id, REPLACED if channel.state == ACTIVE
                                    else ABANDONED)
        logs.log("WARNING" if attempts < 3 else "ERROR", "channel renewal failed",
                 account=account.id, channel_id=channel.id, outcome="renewal_failed",
                 attempts=attempts, error=f"{type(err).__name__}: {err}"[:500])
        run.report.failed += 1
        run.report.errors.append(f"account {account.id}: {type(err).__name__}")
        if isinstance(err, REFUSED_WATCH_ERRORS) and attempts >= run.settings.give_up_attempts:
            reason = getattr(err, "reason", None) or "calendar_request_rejected"
            message = f"watch refused {attempts} times: {type(err).__name__}: {err}"[:500]
            if self._channels.mark_error(account, message, reason):
                run.report.gave_up += 1

    # -- the accounts' requests, safety net, deletions; removed subscriptions ------------

    def sections(self, run: Pass) -> list[tuple[str, Callable[[], Section]]]:
        return [("account sweep", lambda: self._sweep(run)),
                ("account safety net", lambda: self._safety_net(run)),
                ("account deletions", lambda: self._deletions(run)),
                ("removed purge", lambda: self._purge(run))]

    def _scan(self, run: Pass, field: str, before: datetime,
              act: Callable[[Account, dict[str, Any]], Step]) -> Section:
        def fetch(after: RowCursor | None) -> list[tuple[Any, dict[str, Any]]]:
            return list(self._accounts.accounts_where(field, before, run.batch, after))

        def count(reads: int) -> None:
            run.report.subscription_reads += reads

        return run.scan(fetch, lambda row: (row[1].get(field), row[0].id),
                        lambda row: act(*row), lambda row: f"account {row[0].id}", count)

    def _sweep(self, run: Pass) -> Section:
        """A list request left without a task (a crash between commit and enqueue, a task
        out of attempts): queued again under a name no earlier sweep of it used, then
        looked at again after the new task's first attempts."""
        sweep_after = timedelta(seconds=run.settings.sweep_after)

        def act(account: Account, data: dict[str, Any]) -> Step:
            requested = int(data.get("requested_gen") or 0)
            if account.status != ACTIVE:
                cleared = self._accounts.update_if(account.id, {"status": account.status},
                                                   {"sweep_at": None})
                return Step.PROGRESS if cleared else Step.SKIPPED
            state = self._accounts.writer_state(account.id)
            if requested <= int(state.get("synced_gen") or 0):
                cleared = self._accounts.update_if(account.id, {"requested_gen": requested},
                                                   {"sweep_at": None, "requested_at": None})
                return Step.PROGRESS if cleared else Step.SKIPPED
            busy_until = max((t for t in (state.get("lease_until"), data.get("retry_at"))
                              if t is not None and t > run.now), default=None)
            if busy_until is not None:  # a run holds it, or a rate limit's retry is queued
                moved = self._accounts.update_if(account.id, {"requested_gen": requested},
                                                 {"sweep_at": busy_until - sweep_after})
                return Step.MOVED if moved else Step.SKIPPED
            sweeps = int(data.get("sweeps") or 0) + 1 if data.get("swept_gen") == requested else 1
            look = run.now + max(backoff(sweeps, sweep_after), sweep_after)
            if not self._accounts.update_if(
                    account.id, {"requested_gen": requested, "sweeps": data.get("sweeps"),
                                 "swept_gen": data.get("swept_gen")},
                    {"swept_gen": requested, "sweeps": sweeps, "swept_at": run.now,
                     "sweep_at": look - sweep_after}):
                return Step.SKIPPED
            self._service.requeue(account.id, requested, origin=f"sweep{sweeps}")
            run.report.swept += 1
            return Step.PROGRESS

        return self._scan(run, "sweep_at", run.now - sweep_after, act)

    def _safety_net(self, run: Pass) -> Section:
        """An account whose list was not synced within the safety-net interval (every push
        of its list lost) is listed again from its token."""
        interval = timedelta(seconds=run.settings.safety_net_interval)

        def act(account: Account, data: dict[str, Any]) -> Step:
            def covered(at: datetime | None) -> bool:
                return self._accounts.update_if(
                    account.id, {"safety_net_at": data.get("safety_net_at")},
                    {"safety_net_at": at})

            if account.status != ACTIVE:
                return Step.PROGRESS if covered(None) else Step.SKIPPED
            listed = data.get("last_listed_at")
            if listed is not None and listed > run.now - interval:
                return Step.MOVED if covered(listed) else Step.SKIPPED
            if not covered(run.now):
                return Step.SKIPPED
            if data.get("requested_at") is not None:
                return Step.MOVED  # a request is recorded and not served: the sweep's
            queued = self._service.request_list_sync(account.id, origin="safety")
            run.report.safety_net += int(queued)
            return Step.PROGRESS if queued else Step.MOVED

        return self._scan(run, "safety_net_at", run.now - interval, act)

    def _deletions(self, run: Pass) -> Section:
        """Finish an account deletion that stopped midway."""
        sweep_after = timedelta(seconds=run.settings.sweep_after)

        def act(account: Account, data: dict[str, Any]) -> Step:
            if account.status != DELETING:
                cleared = self._accounts.update_if(account.id, {"status": account.status},
                                                   {"deleting_since": None})
                return Step.PROGRESS if cleared else Step.SKIPPED
            if not self._accounts.update_if(account.id,
                                            {"deleting_since": data.get("deleting_since")},
                                            {"deleting_since": run.now}):
                return Step.SKIPPED
            self._service.finish_delete(account.id)
            run.report.deletions_resumed += 1
            return Step.PROGRESS

        return self._scan(run, "deleting_since", run.now - sweep_after, act)

    def _purge(self, run: Pass) -> Section:
        """A removed subscription whose retention ended is deleted (feed, snapshots and
        all; the account's credential stays the account's)."""
        def act(sub: Subscription, data: dict[str, Any]) -> Step:
            if sub.status != REMOVED:
                cleared = run.subs.update_if(sub.id, {"status": sub.status}, {"purge_at": None})
                return Step.PROGRESS if cleared else Step.SKIPPED
            self._subscriptions.unsubscribe(sub.id)
            run.report.purged += 1
            return Step.PROGRESS

        return run.subscriptions("purge_at", run.now, act)
