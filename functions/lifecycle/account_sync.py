"""One calendar-list run of one account: the account's counterpart of `sync.engine`.

It takes the account's lease (its generation fences every membership change),
watches the list if nothing delivers (watch first, then list), lists it with
the stored sync token, applies the policy to every entry returned, and commits
the next token last. Without a token (the first run, a 410, a policy change,
a reconnect) it lists in full and reconciles both ways: calendars listed under
the policy are followed, followed ones the listing lacks (or no longer allows)
are left. Following and leaving are idempotent and each writes its
`calendar_added` / `calendar_removed` entry in the same transaction, so a run
replayed from the last committed token (a crash, a retried task) changes
nothing twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions import logs
from functions.errors import (
    CALENDAR_ACCESS_LOST,
    CALENDAR_NOT_FOUND,
    PERMANENT_CALENDAR_ERRORS,
    REAUTHORIZATION_REQUIRED,
    CalendarRequestRejected,
    CalendarUnavailable,
    CalsyncError,
    InvalidTransition,
    LeaseLost,
    Misconfigured,
    QueueUnavailable,
    RateLimited,
    StoreError,
    StoreUnavailable,
    SyncTokenInvalid,
)
from functions.lifecycle.account_channels import AccountChannels
from functions.lifecycle.accounts import AccountService
from functions.lifecycle.calendar_policy import (
    Decision,
    Followed,
    decide,
    plan_full,
)
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import (
    ABANDONED,
    DELETING,
    ERROR,
    REMOVED,
    AccountLease,
    CalendarListPage,
    LeaseOutcome,
)
from functions.ports import AccountStore, AccountTaskQueue, CalendarListPort, CallBudget
from functions.sync.engine import Outcome

# An adopted subscription in `error` for one of these resumes: the account's credential
# works and its list says the owner can read the calendar.
RESUMABLE = (REAUTHORIZATION_REQUIRED, CALENDAR_ACCESS_LOST, CALENDAR_NOT_FOUND)
# The calls a list run takes from its owner's budget: its first page. A list of more
# than one page (250 calendars) and the list channel's watch are outside it, covered
# by the headroom between the budget and Google's per-user quota.
LIST_CALLS = 1


@dataclass(frozen=True)
class AccountSyncSettings:
    lease_seconds: float = 120.0
    min_sync_interval: float = 2.0
    give_up_attempts: int = 5
    retention: timedelta = timedelta(days=30)  # a removed subscription's data is kept so long


@dataclass(frozen=True)
class AccountReport:
    """What one list run did: everything its log line says."""

    account_id: str
    outcome: Outcome
    mode: str | None
    pages: int
    items: int
    added: int
    removed: int
    duration: float
    error: str | None = None
    retry_at: datetime | None = None

    def log_fields(self) -> dict[str, object]:
        return {"account": self.account_id, "outcome": self.outcome.value, "mode": self.mode,
                "pages": self.pages, "items": self.items, "added": self.added,
                "removed": self.removed, "duration_s": round(self.duration, 3),
                "error": self.error,
                "retry_at": self.retry_at.isoformat() if self.retry_at else None}


@dataclass
class _Progress:
    mode: str | None = None
    pages: int = 0
    items: int = 0
    added: int = 0
    removed: int = 0


class AccountSync:
    def __init__(self, accounts: AccountStore, calendar_list: CalendarListPort,
                 service: AccountService, subscriptions: SubscriptionService,
                 queue: AccountTaskQueue, settings: AccountSyncSettings | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 budget: CallBudget | None = None) -> None:
        """`budget`: the owners' call budgets (DESIGN.md, "Budgets"): a list run takes
        its first page's call from its owner's, as a sync run does, and is deferred to
        the slot the owner's share books when it is short."""
        self._budget = budget
        self._accounts = accounts
        self._list = calendar_list
        self._service = service
        self._channels: AccountChannels = service.channels
        self._subscriptions = subscriptions
        self._queue = queue
        self._settings = settings or AccountSyncSettings()
        self._clock = clock

    def run(self, account_id: str) -> AccountReport:
        started, ticks = self._clock(), time.monotonic()
        progress = _Progress()
        outcome, error, retry_at = self._run(account_id, started, progress)
        return AccountReport(account_id, outcome, progress.mode, progress.pages, progress.items,
                             progress.added, progress.removed, time.monotonic() - ticks,
                             error, retry_at)

    def _run(self, account_id: str, started: datetime,
             progress: _Progress) -> tuple[Outcome, str | None, datetime | None]:
        span = timedelta(seconds=self._settings.lease_seconds)
        try:
            attempt = self._accounts.acquire_lease(
                account_id, started, started + span,
                min_gap=timedelta(seconds=self._settings.min_sync_interval))
        except StoreError as err:
            return Outcome.TRANSIENT, _describe(err), None
        if attempt.outcome is LeaseOutcome.DEFERRED and attempt.retry_at is not None:
            return self._defer(account_id, attempt.retry_at)
        if attempt.outcome is LeaseOutcome.INACTIVE:
            return self._finish_if_deleting(account_id, progress)
        if attempt.lease is None:
            return Outcome(attempt.outcome.value), None, attempt.retry_at
        lease = attempt.lease
        if self._budget is not None:
            account = lease.account
            try:
                # A run deferred to a slot comes back with it (its `retry_at`).
                allowed_at = self._budget.take(account.owner, account.id, LIST_CALLS, started,
                                               booked=account.retry_at)
            except CalsyncError as err:
                self._release_quietly(lease)
                return Outcome.TRANSIENT, _describe(err), None
            if allowed_at is not None:
                return self._wait_until(lease, allowed_at, Outcome.DEFERRED,
                                        "over the owner's Calendar call budget")
        run = _Run(self, lease, progress)
        try:
            self._channels.ensure_channel(lease.account)  # watch first, then list
            token = run.listing()
            final = self._accounts.commit_final(lease, token, self._clock())
            if final.requested_gen > lease.claimed_gen:
                not_before = started + timedelta(seconds=self._settings.min_sync_interval)
                self._queue.enqueue_account_sync(account_id, lease.generation, not_before,
                                                 origin="run")
            return Outcome.SYNCED, None, None
        except LeaseLost as err:
            return Outcome.LEASE_LOST, _describe(err), None
        except RateLimited as err:
            return self._back_off(lease, err)
        except PERMANENT_CALENDAR_ERRORS as err:
            return self._fail(lease, err, getattr(err, "reason", None))
        except CalendarRequestRejected as err:
            return self._refused(lease, err)
        except Misconfigured as err:
            self._release_quietly(lease)
            return Outcome.MISCONFIGURED, _describe(err), None
        except CalsyncError as err:
            self._release_quietly(lease)
            return Outcome.TRANSIENT, _describe(err), None
        except BaseException:
            self._release_quietly(lease)
            raise

    def _finish_if_deleting(self, account_id: str, progress: _Progress
                            ) -> tuple[Outcome, str | None, datetime | None]:
        """A `deleting` account's task (queued by `DELETE /v1/accounts/{id}`) takes it
        down here, off the request. A store or Calendar failure answers `transient`
        and a crash 500, so Cloud Tasks retries; the renewer finishes what retries
        could not (its `deleting_since` scan)."""
        try:
            found = self._accounts.get(account_id)
            if found is None or found[0].status != DELETING:
                return Outcome.INACTIVE, None, None
            progress.mode = "delete"
            self._service.finish_delete(account_id)
        except CalsyncError as err:
            return Outcome.TRANSIENT, _describe(err), None
        return Outcome.INACTIVE, None, None

    def _defer(self, account_id: str,
               retry_at: datetime) -> tuple[Outcome, str | None, datetime | None]:
        # Named by the time it runs and the time of this deferral (see the engine's).
        origin = f"defer{_epoch_ms(self._clock())}"
        try:
            self._queue.enqueue_account_sync(account_id, _epoch_ms(retry_at), retry_at,
                                             origin=origin)
        except QueueUnavailable as err:
            return Outcome.TRANSIENT, _describe(err), retry_at
        return Outcome.DEFERRED, None, retry_at

    def _back_off(self, lease: AccountLease,
                  err: RateLimited) -> tuple[Outcome, str | None, datetime | None]:
        retry_at = self._clock() + timedelta(seconds=err.retry_after)
        return self._wait_until(lease, retry_at, Outcome.RATE_LIMITED, _describe(err))

    def _wait_until(self, lease: AccountLease, retry_at: datetime, outcome: Outcome,
                    why: str) -> tuple[Outcome, str | None, datetime | None]:
        """Let go of the lease until `retry_at` and queue the run then (a task named
        for that time)."""
        now = self._clock()
        try:
            self._accounts.release_lease(lease, now, retry_at=retry_at)
            self._queue.enqueue_account_sync(lease.account.id, _epoch_ms(retry_at), retry_at,
                                             origin="retry")
        except LeaseLost as lost:
            return Outcome.LEASE_LOST, _describe(lost), None
        except CalsyncError as failure:
            return Outcome.TRANSIENT, _describe(failure), retry_at
        return outcome, why, retry_at

    def _fail(self, lease: AccountLease, err: CalsyncError,
              reason: str | None) -> tuple[Outcome, str | None, datetime | None]:
        """The account's own failure (its grant refused, the list refused): `error` with
        the reason, shown by its status; a new authorization code resumes it. Its
        channels cannot be stopped without the credential: left to expire."""
        try:
            self._accounts.release_lease(lease, self._clock(), error=_describe(err),
                                         reason=reason or "calendar_request_rejected")
            for channel in self._accounts.delivering_channels(lease.account.id):
                self._channels.move_channel(channel.id, ABANDONED)
        except LeaseLost as lost:
            return Outcome.LEASE_LOST, _describe(lost), None
        except CalsyncError as failure:
            return Outcome.TRANSIENT, _describe(failure), None
        return Outcome.FAILED, _describe(err), None

    def _refused(self, lease: AccountLease,
                 err: CalendarRequestRejected) -> tuple[Outcome, str | None, datetime | None]:
        """The list request itself refused (a 4xx): retried a bounded number of runs in
        a row, then the account is in `error`: nothing retries for ever."""
        try:
            refused = self._accounts.note_rejected_run(lease)
        except LeaseLost as lost:
            return Outcome.LEASE_LOST, _describe(lost), None
        except CalsyncError as failure:
            self._release_quietly(lease)
            return Outcome.TRANSIENT, _describe(failure), None
        if refused >= self._settings.give_up_attempts:
            return self._fail(lease, err, "calendar_request_rejected")
        self._release_quietly(lease)
        return Outcome.TRANSIENT, f"{_describe(err)} (refused {refused} times)", None

    def _release_quietly(self, lease: AccountLease) -> None:
        with contextlib.suppress(CalsyncError):
            self._accounts.release_lease(lease, self._clock())


class _Run:
    """One leased run: lists, follows and leaves, keeps the lease alive."""

    def __init__(self, sync: AccountSync, lease: AccountLease, progress: _Progress) -> None:
        self.sync = sync
        self.lease = lease
        self.account = lease.account
        self.progress = progress
        self.accounts = sync._accounts
        self.subscriptions = sync._subscriptions
        self.span = timedelta(seconds=sync._settings.lease_seconds)
        self.lease_until = lease.until

    def listing(self) -> str:
        """The listing, applied; the next sync token."""
        if self.lease.sync_token is not None:
            self.progress.mode = "incremental"
            try:
                return self._incremental(self.lease.sync_token)
            except SyncTokenInvalid:
                self.progress.mode = "full_after_410"
        else:
            self.progress.mode = "full"
        return self._full()

    def _pages(self, sync_token: str | None) -> Iterator[CalendarListPage]:
        page_token: str | None = None
        while True:
            page = self.sync._list.list_page(self.account, sync_token=sync_token,
                                             page_token=page_token)
            self.progress.pages += 1
            self.progress.items += len(page.items)
            yield page
            self._keep_lease()
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    def _incremental(self, sync_token: str) -> str:
        """Entries changed since the token: each decided again on its own."""
        token = None
        for page in self._pages(sync_token):
            for entry in page.items:
                decision = decide(entry, self.account.owner, self.account.policy)
                if not decision.calendar_id:
                    continue
                if decision.wanted:
                    self._follow_if_needed(decision)
                else:
                    self._leave_if_followed(decision)
            token = page.next_sync_token
        if token is None:
            raise CalendarUnavailable("calendarList.list ended without a nextSyncToken")
        return token

    def _full(self) -> str:
        """Every entry, then both ways: follow what the policy wants, leave the rest."""
        entries: list[dict[str, Any]] = []
        token = None
        for page in self._pages(None):
            entries.extend(page.items)
            token = page.next_sync_token
        if token is None:
            raise CalendarUnavailable("calendarList.list ended without a nextSyncToken")
        plan = plan_full(entries, self.account.owner, self.account.policy, self._followed(),
                         self.account.credentials_ref)
        for decision in plan.follow:
            self._follow(decision)
        for followed, reason in plan.leave:
            self._leave(followed.sub_id, followed.calendar_id, reason)
        return token

    def _followed(self) -> list[Followed]:
        found: list[Followed] = []
        after: str | None = None
        while True:
            page = self.accounts.members(self.account.id, after, 500)
            found.extend(Followed(sub_id, str(data.get("calendar_id") or ""),
                                  str(data.get("credentials_ref") or ""), _resumable(data))
                         for sub_id, data in page
                         if data.get("status") not in (REMOVED, DELETING))
            if len(page) < 500:
                return found
            after = page[-1][0]

    def _follow_if_needed(self, decision: Decision) -> None:
        found = self.accounts.subscription_for(decision.calendar_id, self.account.owner)
        if found is not None:
            data = found[1]
            if (data.get("account_id") == self.account.id and data.get("account_seq") is not None
                    and data.get("status") not in (REMOVED, DELETING)
                    and data.get("credentials_ref") == self.account.credentials_ref
                    and not _resumable(data)):
                return  # followed already (a property of the entry changed)
        self._follow(decision)

    def _follow(self, decision: Decision) -> None:
        """Subscribe (idempotent per calendar and owner), then follow in one fenced
        transaction with its `calendar_added` entry. A new subscription's first sync is
        queued only then, so `calendar_added` is the first entry of its feed."""
        account = self.account
        try:
            subscribed = self.subscriptions.subscribe(decision.calendar_id, account.owner,
                                                      account.credentials_ref,
                                                      queue_first_sync=False)
        except InvalidTransition as err:
            # Being unsubscribed right now: the task is retried once that finished.
            raise StoreUnavailable(f"calendar {decision.calendar_id}: {err}") from err
        sub_id = subscribed.subscription.id
        details = {"account_id": account.id, "calendar_id": decision.calendar_id,
                   "access_role": decision.access_role}
        try:
            membership = self.accounts.follow(self.lease, sub_id, details, self.sync._clock())
        except LeaseLost:
            if subscribed.created:
                self._drop_unfollowed(sub_id)
            raise
        if subscribed.created:
            self.subscriptions.queue_first_sync(sub_id)
        self._keep_lease()
        if membership.previous_status == ERROR and membership.last_error_reason in RESUMABLE:
            # The list shows it readable with the account's credential: whatever put it
            # in `error` (access lost, not found, a revoked grant) may be over.
            with contextlib.suppress(InvalidTransition, CalsyncError):
                self.subscriptions.resume(sub_id)
        if membership.seq is None:
            return
        self.progress.added += 1
        if membership.generation:  # a removed subscription came back: its sync is recorded
            self.subscriptions.requeue_quietly(sub_id, membership.generation, "account")
        elif not subscribed.created:  # an adopted one: publish its entry now
            self.subscriptions.announce(sub_id, membership.seq)
        if membership.previous_ref:
            self.sync._service.forget_adopted(membership.previous_ref, account)

    def _drop_unfollowed(self, sub_id: str) -> None:
        """A subscription this run created and then could not follow (the account is
        being deleted, or another run took the lease over): taken down, or no account
        would own it. One that got followed meanwhile (the run holding the lease now
        followed it) stays: `disown_unfollowed` checks and marks it `deleting` in one
        transaction, which a later follow refuses (its run is retried and finds the
        calendar again once the deletion is through)."""
        try:
            if not self.accounts.disown_unfollowed(sub_id, self.sync._clock()):
                return
            self.subscriptions.unsubscribe(sub_id)
        except (InvalidTransition, LookupError):
            pass
        except CalsyncError as err:
            logs.log("WARNING", "unfollowed subscription left", account=self.account.id,
                     subscription=sub_id, error=_describe(err))

    def _leave_if_followed(self, decision: Decision) -> None:
        found = self.accounts.subscription_for(decision.calendar_id, self.account.owner)
        if found is None or found[1].get("account_id") != self.account.id:
            return
        if found[1].get("status") in (REMOVED, DELETING):
            return
        self._leave(found[0], decision.calendar_id, decision.reason or "left_calendar_list")

    def _leave(self, sub_id: str, calendar_id: str, reason: str) -> None:
        """`removed` with its data kept for the retention, its channels stopped, its
        `calendar_removed` entry published."""
        now = self.sync._clock()
        details = {"account_id": self.account.id, "calendar_id": calendar_id, "reason": reason}
        membership = self.accounts.unfollow(self.lease, sub_id, details, now,
                                            purge_at=now + self.sync._settings.retention)
        self._keep_lease()
        if membership.seq is None:
            return
        self.progress.removed += 1
        self.subscriptions.retire_channels(sub_id)
        self.subscriptions.announce(sub_id, membership.seq)

    def _keep_lease(self) -> None:
        now = self.sync._clock()
        if self.lease_until - now < self.span / 2:
            self.lease_until = now + self.span
            self.accounts.extend_lease(self.lease, self.lease_until)


def _resumable(data: dict[str, Any]) -> bool:
    """A subscription in `error` for a reason a readable list entry may have cleared."""
    return data.get("status") == ERROR and data.get("last_error_reason") in RESUMABLE


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _describe(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
