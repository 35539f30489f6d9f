"""Accounts: connect once and every calendar follows (DESIGN.md, "Accounts, lifecycle
events, watermark").

Connecting calls no Google API, like subscribing: it records the account with
its first calendar-list request and queues that request's task; the worker's
list run (`account_sync`) watches the list, lists it and follows the calendars
the policy chooses. Connecting the same owner again finds the account: a new
credential replaces the account's for every subscription it follows (and
resumes those waiting for reauthorization), a new policy is reconciled by a
full relisting. Deleting an account stops its channel and deletes its
subscriptions and its credential, the account and its key last.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from functions import logs
from functions.config import Settings
from functions.errors import (
    REAUTHORIZATION_REQUIRED,
    AccountNotFound,
    CalsyncError,
    InvalidTransition,
    QueueUnavailable,
)
from functions.lifecycle.account_channels import AccountChannels
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import (
    ACTIVE,
    DELETING,
    ERROR,
    OAUTH_PREFIX,
    Account,
    CalendarPolicy,
)
from functions.ports import AccountStore, AccountTaskQueue, RefreshTokenVault

MEMBER_PAGE = 200
ACCOUNT_PAGE = 1000  # accounts read at once by the CLI (its listing pages on)


@dataclass(frozen=True)
class ConnectResult:
    """`created` False: the owner was connected already. `queued` False: the first (or a
    new) listing is recorded but not queued; the renewer's sweep queues it."""

    account: Account
    created: bool
    queued: bool


@dataclass(frozen=True)
class AccountStatus:
    """An account's status and health (no secrets in here)."""

    id: str
    owner: str
    status: str
    policy: dict[str, Any]
    calendars_followed: int
    last_listed_at: datetime | None
    last_notification_at: datetime | None
    channel_id: str | None
    channel_state: str | None
    channel_expiration: datetime | None
    pending_requests: int
    last_error: str | None
    last_error_reason: str | None
    last_error_at: datetime | None
    renewal_error: str | None
    created_at: datetime | None = None
    credentials_ref: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items() if k != "extra"}


class AccountService:
    def __init__(self, settings: Settings, accounts: AccountStore,
                 subscriptions: SubscriptionService, channels: AccountChannels,
                 queue: AccountTaskQueue, vault: RefreshTokenVault | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._accounts = accounts
        self._subscriptions = subscriptions
        self._channels = channels
        self._queue = queue
        self._vault = vault
        self._clock = clock

    @property
    def channels(self) -> AccountChannels:
        return self._channels

    # -- connecting ---------------------------------------------------------------

    def connect(self, owner: str, credentials_ref: str,
                policy: CalendarPolicy | None = None) -> ConnectResult:
        """Create the account (its first listing requested and queued), or find the one of
        this owner and bring it to these credentials and this policy.

        Raises InvalidTransition while the existing account is being deleted.
        """
        candidate = Account(id=uuid.uuid4().hex, owner=owner, credentials_ref=credentials_ref,
                            policy=policy or CalendarPolicy())
        account, created = self._accounts.create_or_get(candidate, self._clock())
        if created:
            return ConnectResult(account, True, self._queue_request(account.id, 1))
        if account.status == DELETING:
            raise InvalidTransition(f"account {account.id} of this owner is being deleted",
                                    DELETING)
        queued = False
        if credentials_ref != account.credentials_ref:
            queued = self.reauthorize(account.id, credentials_ref)
        elif account.status == ERROR:
            queued = self._resume(account.id)
        if policy is not None and policy != account.policy:
            self._accounts.update(account.id, {"policy": policy.to_json()})
            generation = self._accounts.request_full_relisting(account.id, self._clock())
            queued = bool(generation) and self._queue_request(account.id, generation)
        elif not queued:
            queued = self.request_list_sync(account.id, origin="connect")
        return ConnectResult(self.require(account.id), False, queued)

    def reauthorize(self, account_id: str, credentials_ref: str) -> bool:
        """A new credential for the account: it replaces the old one for the account and
        every subscription it follows (those waiting for reauthorization resume), then the
        old one is forgotten. An account in `error` resumes with a full relisting. True
        when a listing was queued."""
        account = self.require(account_id)
        old = account.credentials_ref
        self._accounts.set_credentials(account_id, credentials_ref)
        for sub_id, data in self._members(account_id):
            status = data.get("status")
            if status == DELETING:
                continue
            if data.get("credentials_ref") != credentials_ref:
                with contextlib.suppress(LookupError):
                    self._subscriptions.store.update(sub_id, {"credentials_ref": credentials_ref})
            if status == ERROR and data.get("last_error_reason") == REAUTHORIZATION_REQUIRED:
                with contextlib.suppress(InvalidTransition, CalsyncError):
                    self._subscriptions.resume(sub_id)
        self._forget(old, keep=credentials_ref)
        if account.status == ERROR:
            return self._resume(account_id)
        return False

    def _resume(self, account_id: str) -> bool:
        """From `error` back to `active`, with a full relisting requested and queued."""
        try:
            moved = self._accounts.transition(
                account_id, (ERROR,), ACTIVE, self._clock(),
                fields={"last_error": None, "last_error_reason": None, "retry_at": None,
                        "safety_net_at": self._clock()},
                request_sync=True, full=True)
        except LookupError as err:
            raise AccountNotFound(account_id) from err
        return moved.changed and self._queue_request(account_id, moved.generation)

    def _forget(self, credentials_ref: str, keep: str) -> None:
        """Delete a sealed credential nothing uses any more (never the one kept)."""
        if (self._vault is None or not credentials_ref.startswith(OAUTH_PREFIX)
                or credentials_ref == keep or self._accounts.credentials_in_use(credentials_ref)):
            return
        with contextlib.suppress(CalsyncError):
            self._vault.delete(credentials_ref[len(OAUTH_PREFIX):])

    def discard_unused(self, credentials_ref: str) -> bool:
        """A credential sealed for a connect that failed: deleted unless an account or a
        subscription uses it (a connect can fail after its switch to it committed); kept
        when that cannot be told. True when deleted."""
        if self._vault is None or not credentials_ref.startswith(OAUTH_PREFIX):
            return False
        try:
            if self._accounts.credentials_in_use(credentials_ref):
                return False
        except CalsyncError:
            return False
        self._vault.delete(credentials_ref[len(OAUTH_PREFIX):])
        return True

    def forget_adopted(self, credentials_ref: str, account: Account) -> None:
        """A credential a follow replaced (an adopted subscription's own, or the account's
        old one a run subscribed with), now unused: forgotten. Kept: the account's
        credential as it is now, not as the run read it (`account`): a reconnect
        meanwhile replaced the one the run holds, and its own forget found it still
        in use by the subscription the run had just made."""
        found = self._accounts.get(account.id)
        keep = found[0].credentials_ref if found is not None else account.credentials_ref
        self._forget(credentials_ref, keep=keep)

    # -- list requests -------------------------------------------------------------

    def _queue_request(self, account_id: str, generation: int, origin: str = "request") -> bool:
        try:
            self._queue.enqueue_account_sync(account_id, generation, origin=origin)
        except QueueUnavailable as err:
            logs.log("WARNING", "enqueue failed", account=account_id, outcome="enqueue_failed",
                     error=str(err))
            with contextlib.suppress(CalsyncError):
                self._accounts.enqueue_failed(account_id, generation)
            return False
        self._accounts.mark_queued(account_id, generation, self._clock())
        return True

    def request_list_sync(self, account_id: str, origin: str = "request") -> bool:
        """Record a list request and queue its task unless one is queued; True if queued."""
        request = self._accounts.record_list_request(account_id, self._clock())
        if not request.found or not request.needs_task:
            return False
        return self._queue_request(account_id, request.generation, origin=origin)

    def requeue(self, account_id: str, generation: int, origin: str) -> None:
        """Queue a task for an already recorded request (the sweep's repair)."""
        self._queue.enqueue_account_sync(account_id, generation, origin=origin)
        self._accounts.mark_queued(account_id, generation, self._clock())

    # -- deleting ------------------------------------------------------------------

    def delete(self, account_id: str) -> bool:
        """Fence a run in flight and queue the task that takes everything down; True if
        queued. Nothing is torn down here: an account's members can be many more than
        a request's deadline allows. The task (`AccountSync.run` on a `deleting`
        account) is retried by Cloud Tasks; one never queued, or out of retries, is
        finished by the renewer once `deleting_since` is `sweep_after` old."""
        self.require(account_id)
        now = self._clock()
        self._accounts.begin_delete(account_id, now)
        try:
            self._queue.enqueue_account_sync(account_id, _epoch_ms(now), origin="delete")
        except QueueUnavailable as err:
            logs.log("WARNING", "enqueue failed", account=account_id,
                     outcome="enqueue_failed", error=str(err))
            return False
        return True

    def finish_delete(self, account_id: str) -> None:
        """Take a `deleting` account down: its channels, its members, then its records
        (each step safe to re-run, so a crash midway is finished by a retry)."""
        found = self._accounts.get(account_id)
        if found is None:
            return
        account = found[0]
        self._channels.stop_all(account)
        for sub_id, _ in list(self._members(account_id)):
            with contextlib.suppress(LookupError):
                self._subscriptions.unsubscribe(sub_id, account_id=account_id)
        self._accounts.delete_account(account_id)

    # -- reading -------------------------------------------------------------------

    def require(self, account_id: str) -> Account:
        found = self._accounts.get(account_id)
        if found is None:
            raise AccountNotFound(account_id)
        return found[0]

    def _members(self, account_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        after: str | None = None
        while True:
            page = self._accounts.members(account_id, after, MEMBER_PAGE)
            yield from page
            if len(page) < MEMBER_PAGE:
                return
            after = page[-1][0]

    def status(self, account_id: str) -> AccountStatus:
        found = self._accounts.get(account_id)
        if found is None:
            raise AccountNotFound(account_id)
        return self._status(*found)

    def list_status(self, after: str | None = None,
                    limit: int = ACCOUNT_PAGE) -> list[AccountStatus]:
        """One page: at most `limit` accounts after the id `after`."""
        return [self._status(a, d) for a, d in self._accounts.list_accounts(after, limit)]

    def every_status(self) -> Iterator[AccountStatus]:
        """Every account, page after page until a short one."""
        after: str | None = None
        while True:
            page = self._accounts.list_accounts(after, ACCOUNT_PAGE)
            yield from (self._status(a, d) for a, d in page)
            if len(page) < ACCOUNT_PAGE:
                return
            after = page[-1][0].id

    def _status(self, account: Account, data: dict[str, Any]) -> AccountStatus:
        state = self._accounts.writer_state(account.id)
        delivering = self._accounts.delivering_channels(account.id)
        current = max(delivering, key=lambda c: (c.state == ACTIVE, c.expiration
                                                 or datetime.min.replace(tzinfo=UTC)),
                      default=None)
        renewal_error = None
        if current is not None:
            doc = self._subscriptions.store.channel_doc(current.id)
            if doc.get("last_error"):
                renewal_error = f"{doc['last_error']} (attempt {doc.get('renewal_attempts', 0)})"
        requested = int(data.get("requested_gen") or 0)
        return AccountStatus(
            id=account.id, owner=account.owner, status=account.status,
            policy=account.policy.to_json(),
            calendars_followed=self._accounts.count_followed(account.id),
            last_listed_at=data.get("last_listed_at"),
            last_notification_at=data.get("last_notification_at"),
            channel_id=current.id if current else None,
            channel_state=current.state if current else None,
            channel_expiration=current.expiration if current else None,
            pending_requests=max(requested - int(state.get("synced_gen") or 0), 0),
            last_error=account.last_error, last_error_reason=data.get("last_error_reason"),
            last_error_at=data.get("last_error_at"), renewal_error=renewal_error,
            created_at=account.created_at, credentials_ref=account.credentials_ref)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
