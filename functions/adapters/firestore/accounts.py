"""Accounts in Firestore (DESIGN.md, "Accounts, lifecycle events, watermark").

`account_keys/{sha256(normalised owner)}` makes connecting idempotent, as
`subscription_keys` does for subscriptions: the key and the account are created
in one transaction, and the key goes last when the account is deleted.
`accounts/{id}` holds the owner, the one sealed credential the account's
subscriptions share, the calendar policy, the status and the list-sync request
counters; `accounts/{id}/state/writer` the calendar list's `sync_token` and a
lease fenced like a subscription's. The subscriptions it follows are in
`account_members.py`.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore.account_members import AccountMembers
from functions.adapters.firestore.catalogue import (
    ACCOUNT_KEYS,
    ACCOUNTS,
    CHANNELS,
    CREDENTIALS,
    STATE,
    SUBSCRIPTIONS,
    WRITER,
)
from functions.adapters.firestore.channels import CONDITIONAL_ATTEMPTS, _channel
from functions.adapters.firestore.store import ENQUEUE_GRACE, FEED_RETENTION, _translated
from functions.errors import (
    InvalidTransition,
    LeaseLost,
    ResourceMismatch,
    StoreError,
    StoreUnavailable,
)
from functions.model import (
    ACTIVE,
    DEFER_TOLERANCE,
    DELETING,
    DELIVERING_STATES,
    ERROR,
    OAUTH_PREFIX,
    PENDING,
    RETRY_TOLERANCE,
    Account,
    AccountLease,
    AccountLeaseAttempt,
    CalendarPolicy,
    Channel,
    FinalCommit,
    LeaseOutcome,
    SyncRequest,
    Transition,
)
from functions.ports import AccountStore, RowCursor

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEVER = _EPOCH  # `safety_net_at` of an account the safety net has never covered: due at once
_BUMP_ATTEMPTS = 20
DELETE_BATCH = 400


def account_key(owner: str) -> str:
    """The identity of an account: one per owner, normalised."""
    return hashlib.sha256(owner.strip().lower().encode()).hexdigest()


def _account(account_id: str, data: dict[str, Any]) -> Account:
    return Account(
        id=account_id, owner=str(data.get("owner") or ""),
        credentials_ref=str(data.get("credentials_ref") or ""),
        policy=CalendarPolicy.from_json(data.get("policy")),
        status=str(data.get("status") or ACTIVE), last_error=data.get("last_error"),
        requested_gen=int(data.get("requested_gen") or 0), retry_at=data.get("retry_at"),
        created_at=data.get("created_at"))


class AccountFirestoreStore(AccountMembers, AccountStore):
    def __init__(self, client: firestore.Client, *, outbox: bool = False,
                 feed_retention: timedelta = FEED_RETENTION) -> None:
        self._client = client
        self._outbox = outbox  # a topic is configured: lifecycle entries are published
        self._feed_retention = feed_retention

    def _acct(self, account_id: str) -> Any:
        return self._client.collection(ACCOUNTS).document(account_id)

    def _state(self, account_id: str) -> Any:
        return self._acct(account_id).collection(STATE).document(WRITER)

    def _key(self, key: str) -> Any:
        return self._client.collection(ACCOUNT_KEYS).document(key)

    # -- accounts ---------------------------------------------------------------

    def create_or_get(self, account: Account, now: datetime) -> tuple[Account, bool]:
        """One transaction: the key and the account with its first list request (a crash
        before its task is queued leaves a request the sweep finds); a racing second
        connect finds the key. An OAuth credential is marked as the account's, so no
        subscription's deletion takes it along."""
        key = account_key(account.owner)

        @firestore.transactional
        def create(transaction: Any) -> tuple[Account, bool]:
            key_snap = self._key(key).get(transaction=transaction)
            existing_id = (key_snap.to_dict() or {}).get("account_id") if key_snap.exists else None
            if existing_id:
                existing = self._acct(existing_id).get(transaction=transaction)
                if existing.exists:
                    return _account(existing_id, existing.to_dict() or {}), False
            transaction.set(self._key(key), {"account_id": account.id, "owner": account.owner,
                                             "created_at": now})
            transaction.create(self._acct(account.id), {
                "owner": account.owner, "key": key, "credentials_ref": account.credentials_ref,
                "policy": account.policy.to_json(), "status": ACTIVE, "last_error": None,
                "last_error_reason": None, "last_error_at": None,
                "requested_gen": 1, "requested_at": now, "queued_gen": 0, "enqueuing_at": now,
                "sweep_at": now, "safety_net_at": NEVER, "retry_at": None,
                "last_listed_at": None, "last_notification_at": None, "created_at": now,
                "channel_id": None, "channel_expiration": None,
            })
            if account.credentials_ref.startswith(OAUTH_PREFIX):
                self._mark_credential(transaction, account.credentials_ref, account.id)
            created = Account(id=account.id, owner=account.owner,
                              credentials_ref=account.credentials_ref, policy=account.policy,
                              requested_gen=1, created_at=now)
            return created, True

        with _translated():
            result: tuple[Account, bool] = create(self._client.transaction())
            return result

    def _mark_credential(self, transaction: Any, credentials_ref: str, account_id: str) -> None:
        ref = self._client.collection(CREDENTIALS).document(credentials_ref[len(OAUTH_PREFIX):])
        transaction.set(ref, {"account_id": account_id}, merge=True)

    def get(self, account_id: str) -> tuple[Account, dict[str, Any]] | None:
        with _translated():
            snapshot = self._acct(account_id).get()
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        return _account(account_id, data), data

    def writer_state(self, account_id: str) -> dict[str, Any]:
        with _translated():
            return self._state(account_id).get().to_dict() or {}

    def list_accounts(self, after: str | None,
                      limit: int) -> list[tuple[Account, dict[str, Any]]]:
        collection = self._client.collection(ACCOUNTS)
        query = collection.order_by("__name__").limit(limit)
        if after is not None:
            query = query.start_after({"__name__": collection.document(after)})
        with _translated():
            return [(_account(s.id, s.to_dict() or {}), s.to_dict() or {})
                    for s in query.stream()]

    def update(self, account_id: str, fields: dict[str, Any]) -> None:
        with _translated():
            try:
                self._acct(account_id).update(fields)
            except gexc.NotFound as err:
                raise LookupError(account_id) from err

    def update_if(self, account_id: str, expect: dict[str, Any], fields: dict[str, Any]) -> bool:
        @firestore.transactional
        def update(transaction: Any) -> bool:
            snapshot = self._acct(account_id).get(transaction=transaction)
            data = snapshot.to_dict() or {}
            if not snapshot.exists or any(data.get(k) != v for k, v in expect.items()):
                return False
            transaction.update(self._acct(account_id), fields)
            return True

        with _translated():
            return bool(update(self._client.transaction()))

    def transition(self, account_id: str, allowed: Iterable[str], to: str, now: datetime,
                   fields: dict[str, Any] | None = None, request_sync: bool = False,
                   full: bool = False) -> Transition:
        allowed = tuple(allowed)

        @firestore.transactional
        def move(transaction: Any) -> Transition:
            snapshot = self._acct(account_id).get(transaction=transaction)
            if not snapshot.exists:
                raise LookupError(account_id)
            data = snapshot.to_dict() or {}
            status = str(data.get("status") or ACTIVE)
            requested = int(data.get("requested_gen") or 0)
            if status == to:
                return Transition(changed=False, previous=status, generation=requested)
            if status not in allowed:
                raise InvalidTransition(f"account {account_id} is {status}: cannot become {to}",
                                        status)
            update: dict[str, Any] = {"status": to, "status_changed_at": now, **(fields or {})}
            if request_sync:
                requested += 1
                update.update(_request_fields(data, requested, now, full))
            transaction.update(self._acct(account_id), update)
            return Transition(changed=True, previous=status, generation=requested)

        with _translated():
            result: Transition = move(self._client.transaction())
            return result

    def set_credentials(self, account_id: str, credentials_ref: str) -> None:
        @firestore.transactional
        def switch(transaction: Any) -> None:
            snapshot = self._acct(account_id).get(transaction=transaction)
            if not snapshot.exists:
                raise LookupError(account_id)
            if credentials_ref.startswith(OAUTH_PREFIX):
                self._mark_credential(transaction, credentials_ref, account_id)
            transaction.update(self._acct(account_id), {"credentials_ref": credentials_ref})

        with _translated():
            switch(self._client.transaction())

    def credentials_in_use(self, credentials_ref: str) -> bool:
        with _translated():
            return any(True for collection in (SUBSCRIPTIONS, ACCOUNTS)
                       for _ in self._client.collection(collection).where(
                           filter=FieldFilter("credentials_ref", "==", credentials_ref))
                       .select(["__name__"]).limit(1).stream())

    def request_full_relisting(self, account_id: str, now: datetime) -> int:
        @firestore.transactional
        def ask(transaction: Any) -> int:
            snapshot = self._acct(account_id).get(transaction=transaction)
            data = snapshot.to_dict() or {}
            if not snapshot.exists or data.get("status", ACTIVE) != ACTIVE:
                return 0
            requested = int(data.get("requested_gen") or 0) + 1
            transaction.update(self._acct(account_id),
                               _request_fields(data, requested, now, full=True))
            return requested

        with _translated():
            return int(ask(self._client.transaction()))

    def begin_delete(self, account_id: str, now: datetime) -> bool:
        @firestore.transactional
        def fence(transaction: Any) -> bool:
            snapshot = self._acct(account_id).get(transaction=transaction)
            state = self._state(account_id).get(transaction=transaction).to_dict() or {}
            if not snapshot.exists:
                return False
            if (snapshot.to_dict() or {}).get("status") != DELETING:
                transaction.update(self._acct(account_id), {
                    "status": DELETING, "deleting_since": now, "sweep_at": None,
                    "safety_net_at": None})
            transaction.set(self._state(account_id), {
                "lease_generation": int(state.get("lease_generation") or 0) + 1,
                "lease_until": None}, merge=True)
            return True

        with _translated():
            return bool(fence(self._client.transaction()))

    def delete_account(self, account_id: str) -> None:
        """Channel records, the state, the credential, the document, then the key: safe
        to re-run; `deleting` stays visible until all else is gone."""
        account = self._acct(account_id)
        with _translated():
            data = account.get().to_dict() or {}
            for query in (account.collection(STATE),
                          self._client.collection(CHANNELS).where(
                              filter=FieldFilter("account_id", "==", account_id))):
                while docs := list(query.limit(DELETE_BATCH).stream()):
                    batch = self._client.batch()
                    for doc in docs:
                        batch.delete(doc.reference)
                    batch.commit()
            ref = str(data.get("credentials_ref") or "")
            if ref.startswith(OAUTH_PREFIX):
                self._client.collection(CREDENTIALS).document(ref[len(OAUTH_PREFIX):]).delete()
            account.delete()
            key = data.get("key")
            if key:
                self._delete_key(str(key), account_id)

    def _delete_key(self, key: str, account_id: str) -> None:
        @firestore.transactional
        def delete(transaction: Any) -> None:
            snapshot = self._key(key).get(transaction=transaction)
            if snapshot.exists and (snapshot.to_dict() or {}).get("account_id") == account_id:
                transaction.delete(self._key(key))

        delete(self._client.transaction())

    def accounts_where(self, field: str, before: datetime, limit: int,
                       after: RowCursor | None = None) -> list[tuple[Account, dict[str, Any]]]:
        query = (self._client.collection(ACCOUNTS)
                 .where(filter=FieldFilter(field, "<=", before))
                 .order_by(field).order_by("__name__").limit(limit))
        if after is not None:
            query = query.start_after([after[0], self._acct(after[1])])
        with _translated():
            return [(_account(s.id, s.to_dict() or {}), s.to_dict() or {})
                    for s in query.stream()]

    # -- list requests (the webhook's side) -------------------------------------

    def record_list_request(self, account_id: str, now: datetime) -> SyncRequest:
        """As `FirestoreStore.record_sync_request`: a pending request (one a run has not
        claimed yet) costs no write, and a task is known or being queued for it unless
        `needs_task`; otherwise one write conditioned on the document's update time."""
        ref, state_ref = self._acct(account_id), self._state(account_id)
        for attempt in range(_BUMP_ATTEMPTS):
            with _translated():
                found = {s.reference.path: s for s in self._client.get_all([ref, state_ref])}
            snap, state_snap = found.get(ref.path), found.get(state_ref.path)
            if snap is None or not snap.exists:
                return SyncRequest(found=False, needs_task=False)
            data = snap.to_dict() or {}
            state = (state_snap.to_dict() if state_snap is not None else None) or {}
            requested = int(data.get("requested_gen") or 0)
            last_run = state.get("lease_started_at")
            if data.get("status", ACTIVE) != ACTIVE:
                return SyncRequest(found=True, needs_task=False, generation=requested)
            if requested > int(state.get("claimed_gen") or 0):
                queued = int(data.get("queued_gen") or 0) >= requested
                enqueuing = data.get("enqueuing_at")
                in_flight = enqueuing is not None and now - enqueuing < ENQUEUE_GRACE
                return SyncRequest(found=True, needs_task=not queued and not in_flight,
                                   generation=requested, last_run_started_at=last_run)
            generation = requested + 1
            try:
                with _translated():
                    ref.update({"requested_gen": generation, "requested_at": now,
                                "enqueuing_at": now, "sweep_at": now},
                               option=self._client.write_option(
                                   last_update_time=snap.update_time))
            except StoreError as err:
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
                continue
            return SyncRequest(found=True, needs_task=True, generation=generation,
                               last_run_started_at=last_run)
        raise StoreUnavailable(f"account {account_id} too contended to record a request")

    def mark_queued(self, account_id: str, generation: int, now: datetime) -> None:
        self._note_queue(account_id, generation, now)

    def enqueue_failed(self, account_id: str, generation: int) -> None:
        self._note_queue(account_id, generation, None)

    def _note_queue(self, account_id: str, generation: int, queued_at: datetime | None) -> None:
        ref = self._acct(account_id)
        for _ in range(_BUMP_ATTEMPTS):
            with _translated():
                snapshot = ref.get()
            data = snapshot.to_dict() or {}
            if not snapshot.exists or int(data.get("queued_gen") or 0) >= generation:
                return
            if queued_at is None and data.get("enqueuing_at") is None:
                return
            update: dict[str, Any] = (
                {"queued_gen": generation, "queued_at": queued_at} if queued_at is not None
                else {"enqueuing_at": None})
            try:
                with _translated():
                    ref.update(update, option=self._client.write_option(
                        last_update_time=snapshot.update_time))
                return
            except StoreError as err:
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
        raise StoreUnavailable(f"account {account_id} too contended to note its task")

    # -- list runs ----------------------------------------------------------------

    def acquire_lease(self, account_id: str, now: datetime, until: datetime,
                      min_gap: timedelta | None = None) -> AccountLeaseAttempt:
        @firestore.transactional
        def take(transaction: Any) -> AccountLeaseAttempt:
            snap = self._acct(account_id).get(transaction=transaction)
            state = self._state(account_id).get(transaction=transaction).to_dict() or {}
            if not snap.exists:
                return AccountLeaseAttempt(LeaseOutcome.NOT_FOUND)
            data = snap.to_dict() or {}
            account = _account(account_id, data)
            if account.status != ACTIVE:
                return AccountLeaseAttempt(LeaseOutcome.INACTIVE)
            if account.retry_at is not None and account.retry_at - now > RETRY_TOLERANCE:
                return AccountLeaseAttempt(LeaseOutcome.DEFERRED, retry_at=account.retry_at)
            held = state.get("lease_until")
            if held is not None and held > now:
                return AccountLeaseAttempt(LeaseOutcome.BUSY)
            wanted_full = int(data.get("full_relist_requested") or 0)
            full = wanted_full if wanted_full > int(state.get("full_relist_served") or 0) else 0
            if (state.get("sync_token") is not None and not full
                    and account.requested_gen <= int(state.get("synced_gen") or 0)):
                return AccountLeaseAttempt(LeaseOutcome.IDLE)
            last_start = state.get("lease_started_at")
            if min_gap and last_start is not None and now + DEFER_TOLERANCE < last_start + min_gap:
                return AccountLeaseAttempt(LeaseOutcome.DEFERRED, retry_at=last_start + min_gap)
            generation = int(state.get("lease_generation") or 0) + 1
            claimed = max(account.requested_gen, int(state.get("claimed_gen") or 0))
            transaction.set(self._state(account_id), {
                "lease_generation": generation, "lease_until": until, "lease_started_at": now,
                "claimed_gen": claimed}, merge=True)
            lease = AccountLease(account=account, generation=generation, claimed_gen=claimed,
                                 sync_token=None if full else state.get("sync_token"),
                                 started_at=now, until=until, full_request=full)
            return AccountLeaseAttempt(LeaseOutcome.ACQUIRED, lease=lease)

        with _translated():
            result: AccountLeaseAttempt = take(self._client.transaction())
            return result

    def _fenced_state(self, transaction: Any, lease: AccountLease) -> dict[str, Any]:
        state = self._state(lease.account.id).get(transaction=transaction).to_dict() or {}
        if state.get("lease_generation") != lease.generation:
            raise LeaseLost(f"lease generation {lease.generation} of account {lease.account.id} "
                            f"was taken over (now {state.get('lease_generation')})")
        return state

    def extend_lease(self, lease: AccountLease, until: datetime) -> None:
        @firestore.transactional
        def extend(transaction: Any) -> None:
            self._fenced_state(transaction, lease)
            transaction.update(self._state(lease.account.id), {"lease_until": until})

        with _translated():
            extend(self._client.transaction())

    def commit_final(self, lease: AccountLease, sync_token: str, now: datetime) -> FinalCommit:
        account_id = lease.account.id

        @firestore.transactional
        def commit(transaction: Any) -> FinalCommit:
            self._fenced_state(transaction, lease)
            snap = self._acct(account_id).get(transaction=transaction)
            state: dict[str, Any] = {"sync_token": sync_token, "synced_gen": lease.claimed_gen,
                                     "lease_until": None, "synced_at": now, "rejected_runs": 0}
            if lease.full_request:
                state["full_relist_served"] = lease.full_request
            transaction.update(self._state(account_id), state)
            if not snap.exists:
                return FinalCommit(requested_gen=0)
            data = snap.to_dict() or {}
            requested = int(data.get("requested_gen") or 0)
            served: dict[str, Any] = {"last_listed_at": now, "retry_at": None,
                                      "safety_net_at": now}
            if requested <= lease.claimed_gen:
                served.update(requested_at=None, sweep_at=None)
            elif int(data.get("queued_gen") or 0) < requested:
                served["queued_gen"] = requested  # the caller queues the follow-up now
            transaction.update(self._acct(account_id), served)
            return FinalCommit(requested_gen=requested)

        with _translated():
            result: FinalCommit = commit(self._client.transaction())
            return result

    def release_lease(self, lease: AccountLease, now: datetime, *,
                      retry_at: datetime | None = None, error: str | None = None,
                      reason: str | None = None) -> None:
        account_id = lease.account.id

        @firestore.transactional
        def release(transaction: Any) -> None:
            self._fenced_state(transaction, lease)
            snap = self._acct(account_id).get(transaction=transaction)
            transaction.update(self._state(account_id), {"lease_until": None})
            changes: dict[str, Any] = {}
            if retry_at is not None:
                changes["retry_at"] = retry_at
            if error is not None and (snap.to_dict() or {}).get("status", ACTIVE) == ACTIVE:
                changes.update(status=ERROR, last_error=error, last_error_at=now,
                               last_error_reason=reason, status_changed_at=now,
                               sweep_at=None, safety_net_at=None)
            if changes and snap.exists:
                transaction.update(self._acct(account_id), changes)

        with _translated():
            release(self._client.transaction())

    def note_rejected_run(self, lease: AccountLease) -> int:
        @firestore.transactional
        def note(transaction: Any) -> int:
            refused = int(self._fenced_state(transaction, lease).get("rejected_runs") or 0) + 1
            transaction.update(self._state(lease.account.id), {"rejected_runs": refused})
            return refused

        with _translated():
            return int(note(self._client.transaction()))

    # -- channels -------------------------------------------------------------------

    def _channels(self, account_id: str) -> Any:
        return self._client.collection(CHANNELS).where(
            filter=FieldFilter("account_id", "==", account_id))

    def delivering_channels(self, account_id: str) -> list[Channel]:
        query = self._channels(account_id).where(
            filter=FieldFilter("state", "in", list(DELIVERING_STATES)))
        with _translated():
            return [_channel(s.id, s.to_dict() or {}) for s in query.stream()]

    def channels_of(self, account_id: str) -> list[Channel]:
        with _translated():
            return [_channel(s.id, s.to_dict() or {}) for s in self._channels(account_id).stream()]

    def activate_channel(self, channel_id: str, account_id: str, resource_id: str,
                         expiration: datetime) -> bool:
        """As `SubscriptionStore.activate_channel`: a read, then one batch conditioned on
        the channel's update time (the webhook may learn its resource id meanwhile)."""
        ref = self._client.collection(CHANNELS).document(channel_id)
        for _ in range(CONDITIONAL_ATTEMPTS):
            with _translated():
                snapshot = ref.get()
            data = snapshot.to_dict() or {}
            known = data.get("resource_id")
            if known is not None and known != resource_id:
                raise ResourceMismatch(channel_id)
            if not snapshot.exists or data.get("state") != PENDING:
                return False
            batch = self._client.batch()
            batch.update(ref, {
                "state": ACTIVE, "resource_id": resource_id, "expiration": expiration,
                "renewal_attempts": 0, "next_attempt_at": None, "last_error": None,
            }, option=self._client.write_option(last_update_time=snapshot.update_time))
            batch.update(self._acct(account_id), {"channel_id": channel_id,
                                                  "channel_expiration": expiration})
            try:
                with _translated():
                    batch.commit()
                return True
            except StoreError as err:
                if isinstance(err.__cause__, gexc.NotFound):
                    return False  # the account was deleted meanwhile
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
        raise StoreUnavailable(f"channel {channel_id} too contended to activate")


def _request_fields(data: dict[str, Any], generation: int, now: datetime,
                    full: bool) -> dict[str, Any]:
    """What recording list request `generation` writes on the account (in a transaction
    that read `data`): the sweep's `sweep_at`, and for a full relisting its counter."""
    fields: dict[str, Any] = {"requested_gen": generation, "requested_at": now,
                              "enqueuing_at": now, "sweep_at": now}
    if full:
        fields["full_relist_requested"] = int(data.get("full_relist_requested") or 0) + 1
    return fields
