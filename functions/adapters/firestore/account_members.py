"""The subscriptions an account follows, in Firestore: `subscriptions/{id}.account_id`.

Following and leaving are each one transaction, fenced on the account's lease:
the subscription's status and credentials change together with the
`calendar_added` / `calendar_removed` entry appended to its feed (the next
`seq` of its `state/writer`, as `LifecycleStore.record_event` takes it). So a
run replayed after a crash finds the change made and writes no second entry,
and a run that lost its lease writes nothing: exactly one entry per change of
membership. `account_seq` (the seq of the `calendar_added` entry) says the
account follows the subscription now.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore.catalogue import (
    ACCOUNTS,
    STATE,
    SUBSCRIPTION_KEYS,
    SUBSCRIPTIONS,
    WRITER,
)
from functions.adapters.firestore.store import _translated
from functions.adapters.firestore.subscriptions import append_lifecycle_entry, subscription_key
from functions.errors import InvalidTransition, LeaseLost
from functions.model import (
    ACTIVE,
    CALENDAR_ADDED,
    CALENDAR_REMOVED,
    DELETING,
    ERROR,
    PAUSED,
    REMOVED,
    AccountLease,
    Membership,
)

FOLLOWED_STATUSES = (ACTIVE, PAUSED, ERROR)


class AccountMembers:
    """Mixed into `AccountFirestoreStore` (which sets these)."""

    _client: Any
    _outbox: bool
    _feed_retention: timedelta

    def _sub(self, sub_id: str) -> Any:
        return self._client.collection(SUBSCRIPTIONS).document(sub_id)

    def _members(self, account_id: str) -> Any:
        return self._client.collection(SUBSCRIPTIONS).where(
            filter=FieldFilter("account_id", "==", account_id))

    def members(self, account_id: str, after: str | None,
                limit: int) -> list[tuple[str, dict[str, Any]]]:
        query = self._members(account_id).order_by("__name__").limit(limit)
        if after is not None:
            query = query.start_after({"__name__": self._sub(after)})
        with _translated():
            return [(s.id, s.to_dict() or {}) for s in query.stream()]

    def count_followed(self, account_id: str) -> int:
        """One aggregation over equality filters (single-field indexes suffice)."""
        query = self._members(account_id).where(
            filter=FieldFilter("status", "in", list(FOLLOWED_STATUSES)))
        with _translated():
            results = query.count().get()
        return int(results[0][0].value) if results and results[0] else 0

    def subscription_for(self, calendar_id: str, owner: str) -> tuple[str, dict[str, Any]] | None:
        key = subscription_key(calendar_id, owner)
        with _translated():
            key_snap = self._client.collection(SUBSCRIPTION_KEYS).document(key).get()
            sub_id = (key_snap.to_dict() or {}).get("sub_id") if key_snap.exists else None
            if not sub_id:
                return None
            snapshot = self._sub(str(sub_id)).get()
        return (snapshot.id, snapshot.to_dict() or {}) if snapshot.exists else None

    def _read(self, transaction: Any, lease: AccountLease,
              sub_id: str) -> tuple[Any, dict[str, Any], dict[str, Any], str]:
        """The fenced reads of a membership change: the account's writer state (its
        lease must still be `lease`), the subscription and its writer state, and the
        account's credential as it is now (a reconnect may have replaced it since the
        run began)."""
        account_ref = self._client.collection(ACCOUNTS).document(lease.account.id)
        account_state = account_ref.collection(STATE).document(WRITER)
        sub_ref = self._sub(sub_id)
        state_ref = sub_ref.collection(STATE).document(WRITER)
        found = {s.reference.path: s for s in self._client.get_all(
            [account_ref, account_state, sub_ref, state_ref], transaction=transaction)}
        fence = found.get(account_state.path)
        held = (fence.to_dict() if fence is not None and fence.exists else None) or {}
        if held.get("lease_generation") != lease.generation:
            raise LeaseLost(f"lease generation {lease.generation} of account {lease.account.id} "
                            f"was taken over (now {held.get('lease_generation')})")
        account = found.get(account_ref.path)
        credentials_ref = str(((account.to_dict() if account is not None and account.exists
                                else None) or {}).get("credentials_ref")
                              or lease.account.credentials_ref)
        sub_snap = found.get(sub_ref.path)
        if sub_snap is None or not sub_snap.exists:
            raise LookupError(sub_id)
        state_snap = found.get(state_ref.path)
        state = (state_snap.to_dict() if state_snap is not None and state_snap.exists
                 else None) or {}
        return sub_ref, sub_snap.to_dict() or {}, state, credentials_ref

    def follow(self, lease: AccountLease, sub_id: str, details: dict[str, Any],
               now: datetime) -> Membership:
        account = lease.account

        @firestore.transactional
        def follow(transaction: Any) -> Membership:
            sub_ref, data, state, credentials_ref = self._read(transaction, lease, sub_id)
            status = str(data.get("status") or ACTIVE)
            if status == DELETING:
                raise InvalidTransition(f"subscription {sub_id} is being deleted", DELETING)
            previous_ref = str(data.get("credentials_ref") or "")
            result = Membership(sub_id, previous_status=status, previous_ref=previous_ref,
                                last_error_reason=data.get("last_error_reason"))
            update: dict[str, Any] = {}
            if previous_ref != credentials_ref:
                update["credentials_ref"] = credentials_ref
            if data.get("account_id") != account.id:
                update["account_id"] = account.id
            followed = (data.get("account_id") == account.id and status != REMOVED
                        and data.get("account_seq") is not None)
            if not followed:
                seq = append_lifecycle_entry(transaction, sub_ref, state, CALENDAR_ADDED,
                                             details, now, expire_at=now + self._feed_retention,
                                             outbox=self._outbox)
                update["account_seq"] = seq
                result = Membership(sub_id, seq, status, previous_ref,
                                    last_error_reason=result.last_error_reason)
                if status == REMOVED:
                    # Back on the list: active again, everything listed once more and
                    # reconciled (changes made while it was away included).
                    generation = int(data.get("requested_gen") or 0) + 1
                    update.update(
                        status=ACTIVE, status_changed_at=now, removed_at=None, purge_at=None,
                        requested_gen=generation, requested_at=now, enqueuing_at=now,
                        sweep_at=now, safety_net_at=now, retry_at=None, last_error=None,
                        full_resync_requested=int(data.get("full_resync_requested") or 0) + 1)
                    result = Membership(sub_id, seq, status, previous_ref, generation)
            if update:
                transaction.update(sub_ref, update)
            return result

        with _translated():
            membership: Membership = follow(self._client.transaction())
            return membership

    def disown_unfollowed(self, sub_id: str, now: datetime) -> bool:
        # The check and the mark in one transaction: `follow` refuses a `deleting`
        # subscription, so a follow commits either before (then this keeps it) or
        # not at all; a separate read, then a delete, could take down one followed
        # in between.
        @firestore.transactional
        def disown(transaction: Any) -> bool:
            sub_ref = self._sub(sub_id)
            state_ref = sub_ref.collection(STATE).document(WRITER)
            snap = sub_ref.get(transaction=transaction)
            state = state_ref.get(transaction=transaction).to_dict() or {}
            if not snap.exists:
                return False
            data = snap.to_dict() or {}
            status = str(data.get("status") or ACTIVE)
            if status == DELETING:
                return True
            if data.get("account_id") and status != REMOVED:
                return False
            transaction.update(sub_ref, {"status": DELETING, "deleting_since": now,
                                         "sweep_at": None, "safety_net_at": None})
            transaction.set(state_ref, {
                "lease_generation": int(state.get("lease_generation") or 0) + 1,
                "lease_until": None}, merge=True)
            return True

        with _translated():
            return bool(disown(self._client.transaction()))

    def unfollow(self, lease: AccountLease, sub_id: str, details: dict[str, Any],
                 now: datetime, purge_at: datetime) -> Membership:
        account = lease.account

        @firestore.transactional
        def leave(transaction: Any) -> Membership:
            try:
                sub_ref, data, state, _ = self._read(transaction, lease, sub_id)
            except LookupError:
                return Membership(sub_id, previous_status=DELETING)
            status = str(data.get("status") or ACTIVE)
            if data.get("account_id") != account.id or status in (REMOVED, DELETING):
                return Membership(sub_id, previous_status=status)
            # Fence a run in flight, as an unsubscribe does: nothing is written after the
            # entry that says the calendar left.
            fence = {"lease_generation": int(state.get("lease_generation") or 0) + 1,
                     "lease_until": None}
            seq = append_lifecycle_entry(transaction, sub_ref, state, CALENDAR_REMOVED, details,
                                         now, expire_at=now + self._feed_retention,
                                         outbox=self._outbox, state_fields=fence)
            transaction.update(sub_ref, {
                "status": REMOVED, "status_changed_at": now, "removed_at": now,
                "purge_at": purge_at, "account_seq": None, "sweep_at": None,
                "safety_net_at": None, "retry_at": None})
            return Membership(sub_id, seq, status, str(data.get("credentials_ref") or ""))

        with _translated():
            membership: Membership = leave(self._client.transaction())
            return membership
