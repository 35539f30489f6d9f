"""Firestore side of the subscription lifecycle and the renewer's indexed queries.

The sync run's own reads and writes live in `store.py`; this module creates
subscriptions (one per calendar and owner, through `subscription_keys`),
moves them between statuses (every transition conditional on the current
status), fences and deletes them, tracks channels through their lifecycle,
and answers the renewer's queries (each backed by an index in terraform/,
listed in `catalogue.py`).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore import codec
from functions.adapters.firestore.catalogue import CHANGES, EVENTS, STATE, SUBSCRIPTION_KEYS, WRITER
from functions.adapters.firestore.channels import CHANNELS, CONDITIONAL_ATTEMPTS, _channel
from functions.adapters.firestore.credentials import CREDENTIALS_COLLECTION
from functions.adapters.firestore.store import (
    FEED_RETENTION,
    SUBSCRIPTIONS,
    _subscription,
    _translated,
    append_lifecycle,
    outbox_fields,
    seq_id,
)
from functions.errors import InvalidTransition, ResourceMismatch, StoreError, StoreUnavailable
from functions.model import (
    ACTIVE,
    DELETING,
    DELIVERING_STATES,
    OAUTH_PREFIX,
    PENDING,
    Channel,
    LifecycleDraft,
    Subscription,
    Transition,
    channel_shard,
    shard_values,
)
from functions.ports import LifecycleStore, RowCursor

DELETE_BATCH = 400
RECORD_ATTEMPTS = 20  # transaction attempts of a lifecycle entry
CONTENDED_ROUNDS = 4  # rounds of those attempts, a pause apart, for a contended key


def _contended(err: StoreError) -> bool:
    """A transaction that lost to others every time (its attempts spent on aborts)."""
    cause = err.__cause__
    return isinstance(cause, gexc.Aborted) or (
        isinstance(cause, ValueError) and isinstance(cause.__cause__, gexc.Aborted))
# The renewer's own bookkeeping: `renewer/shard_backfill` (old channel records given
# their shard). Read and written by key only: no query, no index.
RENEWER = "renewer"
SHARD_BACKFILL = "shard_backfill"
WRITE_BATCH = 500  # Firestore's limit of writes per batch
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# `safety_net_at` of a subscription the safety net has never covered: due at once.
NEVER = _EPOCH


def subscription_key(calendar_id: str, owner: str) -> str:
    """The identity of a subscription: one per (calendar, owner), normalised."""
    owner = owner.strip().lower()
    calendar = calendar_id.strip().lower()
    if calendar == "primary":
        calendar = owner  # `primary` is the owner's own calendar
    return hashlib.sha256(f"{calendar}\x00{owner}".encode()).hexdigest()


class SubscriptionStore(LifecycleStore):
    def __init__(self, client: firestore.Client, *, outbox: bool = False,
                 feed_retention: timedelta = FEED_RETENTION) -> None:
        self._client = client
        self._outbox = outbox  # a topic is configured: entries are published
        self._feed_retention = feed_retention

    def _sub(self, sub_id: str) -> Any:
        return self._client.collection(SUBSCRIPTIONS).document(sub_id)

    def _key(self, key: str) -> Any:
        return self._client.collection(SUBSCRIPTION_KEYS).document(key)

    def _channel(self, channel_id: str) -> Any:
        return self._client.collection(CHANNELS).document(channel_id)

    # -- subscriptions --------------------------------------------------------

    def create_or_get(self, sub: Subscription, now: datetime) -> tuple[Subscription, bool]:
        """Create the subscription with its first sync request recorded, or find the
        existing one for the same (calendar, owner); True when created.

        The key and the subscription are written in one transaction, so of two
        racing subscribes exactly one creates and the other finds it.
        """
        key = subscription_key(sub.calendar_id, sub.owner)

        @firestore.transactional
        def create(transaction: Any) -> tuple[Subscription, bool]:
            key_snap = self._key(key).get(transaction=transaction)
            existing_id = (key_snap.to_dict() or {}).get("sub_id") if key_snap.exists else None
            if existing_id:
                existing = self._sub(existing_id).get(transaction=transaction)
                if existing.exists:
                    return _subscription(existing_id, existing.to_dict() or {}), False
                # A key whose subscription is gone (an unsubscribe that stopped
                # between its last two deletes) is taken over.
            transaction.set(self._key(key), {"sub_id": sub.id, "calendar_id": sub.calendar_id,
                                             "owner": sub.owner, "created_at": now})
            transaction.create(self._sub(sub.id), {
                "calendar_id": sub.calendar_id, "owner": sub.owner, "key": key,
                "credentials_ref": sub.credentials_ref, "status": ACTIVE,
                "labels": dict(sub.labels), "last_error": None, "last_error_at": None,
                # The first sync is requested in the same write that creates the
                # subscription: a crash before its task is queued leaves a
                # request the sweep finds.
                "requested_gen": 1, "requested_at": now, "queued_gen": 0,
                "enqueuing_at": now, "sweep_at": now,
                # The renewer's sort keys (DESIGN.md, "Liveness"): the sweep looks at a
                # request `sweep_after` past `sweep_at`; the safety net at a
                # subscription `safety_net_at` (never covered yet: at once).
                "safety_net_at": NEVER,
                "retry_at": None, "last_synced_at": None, "last_notification_at": None,
                "created_at": now, "channel_id": None, "channel_expiration": None,
            })
            created = Subscription(id=sub.id, calendar_id=sub.calendar_id, owner=sub.owner,
                                   credentials_ref=sub.credentials_ref, labels=dict(sub.labels),
                                   requested_gen=1, created_at=now)
            return created, True

        # Racing subscribes of one calendar contend on its key by design: more
        # attempts than the default five, so they converge instead of failing; and
        # since the client begins an aborted transaction again at once, a few rounds
        # of those with a jittered pause between them (a loaded Firestore answers
        # "Transaction lock timeout" to every one of a round's attempts).
        for rounds_left in range(CONTENDED_ROUNDS - 1, -1, -1):
            try:
                with _translated():
                    result: tuple[Subscription, bool] = create(
                        self._client.transaction(max_attempts=RECORD_ATTEMPTS))
                    return result
            except StoreError as err:
                if not rounds_left or not _contended(err):
                    raise
            time.sleep(random.uniform(0.05, 0.25) * (CONTENDED_ROUNDS - rounds_left))
        raise AssertionError("unreachable")

    def get(self, sub_id: str) -> tuple[Subscription, dict[str, Any]] | None:
        with _translated():
            snapshot = self._sub(sub_id).get()
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        return _subscription(sub_id, data), data

    def writer_state(self, sub_id: str) -> dict[str, Any]:
        with _translated():
            return self._sub(sub_id).collection(STATE).document(WRITER).get().to_dict() or {}

    def list_all(self, limit: int = 1000) -> list[tuple[Subscription, dict[str, Any]]]:
        with _translated():
            snapshots = list(self._client.collection(SUBSCRIPTIONS).limit(limit).stream())
        return [(_subscription(s.id, s.to_dict() or {}), s.to_dict() or {}) for s in snapshots]

    def update(self, sub_id: str, fields: dict[str, Any]) -> None:
        with _translated():
            self._sub(sub_id).update(fields)

    def transition(self, sub_id: str, allowed: Iterable[str], to: str, now: datetime,
                   fields: dict[str, Any] | None = None,
                   request_sync: bool = False,
                   event: Callable[[str, dict[str, Any]], LifecycleDraft | None] | None = None,
                   ) -> Transition:
        """Move to `to` only from a status in `allowed`, in one transaction.

        Already in `to`: a no-op (`changed` False). Any other status raises
        InvalidTransition. With `request_sync` the same write records a sync
        request (`generation` is its number), so nothing can run in between
        without seeing it. `event` names the lifecycle entry the move writes in
        the same transaction (ordered after the run's committed entries, like
        `record_event`). Raises LookupError when the subscription is gone.
        """
        allowed = tuple(allowed)

        @firestore.transactional
        def move(transaction: Any) -> Transition:
            snapshot = self._sub(sub_id).get(transaction=transaction)
            if not snapshot.exists:
                raise LookupError(sub_id)
            data = snapshot.to_dict() or {}
            status = data.get("status", ACTIVE)
            requested = int(data.get("requested_gen") or 0)
            if status == to:
                return Transition(changed=False, previous=status, generation=requested)
            if status not in allowed:
                raise InvalidTransition(
                    f"subscription {sub_id} is {status}: cannot become {to}", status)
            draft = event(status, data) if event is not None else None
            state = self._writer_in(transaction, sub_id) if draft is not None else {}
            update: dict[str, Any] = {"status": to, "status_changed_at": now, **(fields or {})}
            if request_sync:
                requested += 1
                update.update(requested_gen=requested, requested_at=now, sweep_at=now)
            transaction.update(self._sub(sub_id), update)
            seq = self._append(transaction, sub_id, state, draft, now) if draft else 0
            return Transition(changed=True, previous=status, generation=requested,
                              event_seq=seq)

        with _translated():
            result: Transition = move(self._client.transaction())
            return result

    def begin_delete(self, sub_id: str, now: datetime,
                     event: LifecycleDraft | None = None) -> bool:
        """Mark `deleting` and bump the lease generation: an in-flight run writes nothing more.

        Safe to repeat on a subscription already `deleting` (a resumed unsubscribe):
        `event` is written only by the call that moves the status, after every entry
        a run committed (the fence bumps the generation in the same transaction).
        """
        @firestore.transactional
        def fence(transaction: Any) -> bool:
            snapshot = self._sub(sub_id).get(transaction=transaction)
            writer = self._sub(sub_id).collection(STATE).document(WRITER)
            state = writer.get(transaction=transaction).to_dict() or {}
            if not snapshot.exists:
                return False
            fenced: dict[str, Any] = {
                "lease_generation": int(state.get("lease_generation") or 0) + 1,
                "lease_until": None,
            }
            if (snapshot.to_dict() or {}).get("status") != DELETING:
                # `deleting_since` is the renewer's sort key for resuming it; the
                # sweep and the safety net have nothing more to do here.
                transaction.update(self._sub(sub_id), {"status": DELETING, "deleting_since": now,
                                                       "sweep_at": None, "safety_net_at": None})
                if event is not None:
                    fenced.update(self._entry_fields(transaction, sub_id, state, event, now))
            transaction.set(writer, fenced, merge=True)
            return True

        with _translated():
            return bool(fence(self._client.transaction()))

    def delete_tree(self, sub_id: str, credentials_ref: str) -> int:
        """Delete snapshots, feed, state, channels, credentials, the document, the key.

        Batched, and safe to re-run after an interruption: the subscription
        document and then its key go last, so `deleting` stays visible until
        all else is gone, and the same calendar cannot be subscribed again
        before that.
        """
        deleted = 0
        sub = self._sub(sub_id)
        with _translated():
            data = sub.get().to_dict() or {}
            key = data.get("key")
            for name in (EVENTS, CHANGES, STATE):
                deleted += self._delete_query(sub.collection(name))
            deleted += self._delete_query(
                self._client.collection(CHANNELS).where(filter=FieldFilter("sub_id", "==", sub_id)))
            if credentials_ref.startswith(OAUTH_PREFIX):
                credential = self._client.collection(CREDENTIALS_COLLECTION).document(
                    credentials_ref[len(OAUTH_PREFIX):])
                # An account's credential is shared by its subscriptions: the account
                # deletes it, never one of them.
                if not data.get("account_id") and not (
                        credential.get().to_dict() or {}).get("account_id"):
                    credential.delete()
            sub.delete()
            if key:
                self._delete_key(key, sub_id)
        return deleted + 1

    def _delete_key(self, key: str, sub_id: str) -> None:
        @firestore.transactional
        def delete(transaction: Any) -> None:
            snapshot = self._key(key).get(transaction=transaction)
            if snapshot.exists and (snapshot.to_dict() or {}).get("sub_id") == sub_id:
                transaction.delete(self._key(key))

        delete(self._client.transaction())

    def _delete_query(self, query: Any) -> int:
        count = 0
        while True:
            docs = list(query.limit(DELETE_BATCH).stream())
            if not docs:
                return count
            batch = self._client.batch()
            for doc in docs:
                batch.delete(doc.reference)
            batch.commit()
            count += len(docs)

    def clear_request_marker(self, sub_id: str, requested_gen: int) -> bool:
        """Unset `requested_at` if `requested_gen` is still the one that was served."""
        @firestore.transactional
        def clear(transaction: Any) -> bool:
            snapshot = self._sub(sub_id).get(transaction=transaction)
            data = snapshot.to_dict() or {}
            if not snapshot.exists or int(data.get("requested_gen") or 0) != requested_gen:
                return False
            transaction.update(self._sub(sub_id), {"requested_at": None, "sweep_at": None})
            return True

        with _translated():
            return bool(clear(self._client.transaction()))

    def update_if(self, sub_id: str, expect: dict[str, Any], fields: dict[str, Any]) -> bool:
        """Compare and set in one transaction (the renewer's moves and claims)."""
        @firestore.transactional
        def update(transaction: Any) -> bool:
            snapshot = self._sub(sub_id).get(transaction=transaction)
            data = snapshot.to_dict() or {}
            if not snapshot.exists or any(data.get(k) != v for k, v in expect.items()):
                return False
            transaction.update(self._sub(sub_id), fields)
            return True

        with _translated():
            return bool(update(self._client.transaction()))

    # -- channels -------------------------------------------------------------

    def channels_of(self, sub_id: str) -> list[Channel]:
        query = self._client.collection(CHANNELS).where(filter=FieldFilter("sub_id", "==", sub_id))
        with _translated():
            return [_channel(s.id, s.to_dict() or {}) for s in query.stream()]

    def delivering_channels(self, sub_id: str) -> list[Channel]:
        """The subscription's `pending` and `active` channels (equality filters only,
        served by single-field indexes)."""
        query = (self._client.collection(CHANNELS)
                 .where(filter=FieldFilter("sub_id", "==", sub_id))
                 .where(filter=FieldFilter("state", "in", list(DELIVERING_STATES))))
        with _translated():
            return [_channel(s.id, s.to_dict() or {}) for s in query.stream()]

    def channel_doc(self, channel_id: str) -> dict[str, Any]:
        with _translated():
            return self._channel(channel_id).get().to_dict() or {}

    def activate_channel(self, channel_id: str, sub_id: str, resource_id: str,
                         expiration: datetime, version: datetime | None = None) -> bool:
        """Record the watch response on a channel still `pending`; it must match a
        resource id learnt meanwhile. False (nothing written) when the channel left
        `pending` while the watch was in flight, or it or its subscription is gone.

        A read, then one batch conditioned on the channel's update time (re-read
        if the webhook wrote meanwhile): no interactive transaction, which could
        deadlock with the webhook learning the resource id from the `sync`
        message that arrives while the watch is in flight. With `version` (the
        update time of our own save) the first attempt skips the read: unchanged
        since that save, the record is `pending` with no resource id.
        """
        ref = self._channel(channel_id)
        for _ in range(CONDITIONAL_ATTEMPTS):
            if version is not None:
                seen, version = version, None
            else:
                with _translated():
                    snapshot = ref.get()
                data = snapshot.to_dict() or {}
                known = data.get("resource_id")
                if known is not None and known != resource_id:
                    raise ResourceMismatch(channel_id)
                if not snapshot.exists or data.get("state") != PENDING:
                    return False  # stopped, abandoned or deleted meanwhile: never revived
                seen = snapshot.update_time
            batch = self._client.batch()
            batch.update(ref, {
                "state": ACTIVE, "resource_id": resource_id, "expiration": expiration,
                "renewal_attempts": 0, "next_attempt_at": None, "last_error": None,
            }, option=self._client.write_option(last_update_time=seen))
            # `update`, never `set`: must not resurrect a subscription deleted meanwhile.
            batch.update(self._sub(sub_id), {"channel_id": channel_id,
                                             "channel_expiration": expiration})
            try:
                with _translated():
                    batch.commit()
                return True
            except StoreError as err:
                if isinstance(err.__cause__, gexc.NotFound):
                    return False  # unsubscribed meanwhile
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
        raise StoreUnavailable(f"channel {channel_id} too contended to activate")

    def save_channel(self, channel: Channel, now: datetime, **fields: Any) -> datetime | None:
        """Create or replace a channel record (`fields`: extra bookkeeping such as
        `token_key_id`); the write's update time."""
        with _translated():
            result = self._channel(channel.id).set({
                "sub_id": channel.sub_id, "state": channel.state,
                "resource_id": channel.resource_id, "expiration": channel.expiration,
                "created_at": now, "last_notification_at": None,
                "last_message_number": 0, "renewal_attempts": 0,
                "shard": channel_shard(channel.id),
                "kind": channel.kind, "account_id": channel.account_id, **fields,
            })
        return getattr(result, "update_time", None)

    def set_channel(self, channel_id: str, fields: dict[str, Any]) -> None:
        with _translated():
            self._channel(channel_id).update(fields)

    def _conditional(self, channel_id: str, allowed: Any, write: Any,
                     version: datetime | None = None) -> bool:
        """Read the channel, and if `allowed(data)` write it conditioned on its update
        time (re-read if someone wrote meanwhile); False if not allowed or gone.
        With `version` (the caller read it allowed at that update time) the first
        write needs no read: it fails, and the read follows, if anyone wrote since."""
        ref = self._channel(channel_id)
        if version is not None:
            try:
                with _translated():
                    write(ref, self._client.write_option(last_update_time=version))
                return True
            except StoreError as err:
                if isinstance(err.__cause__, gexc.NotFound):
                    return False
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
        for _ in range(CONDITIONAL_ATTEMPTS):
            with _translated():
                snapshot = ref.get()
            if not snapshot.exists or not allowed(snapshot.to_dict() or {}):
                return False
            option = self._client.write_option(last_update_time=snapshot.update_time)
            try:
                with _translated():
                    write(ref, option)
                return True
            except StoreError as err:
                if isinstance(err.__cause__, gexc.NotFound):
                    return False
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
        raise StoreUnavailable(f"channel {channel_id} too contended to change")

    def move_channel(self, channel_id: str, from_states: Iterable[str],
                     fields: dict[str, Any], version: datetime | None = None) -> bool:
        states = tuple(from_states)
        return self._conditional(channel_id, lambda data: data.get("state") in states,
                                 lambda ref, option: ref.update(fields, option=option),
                                 version)

    def delete_channel(self, channel_id: str, state: str) -> bool:
        return self._conditional(channel_id, lambda data: data.get("state") == state,
                                 lambda ref, option: ref.delete(option=option))

    def claim_channel(self, channel_id: str, state: str, now: datetime,
                      until: datetime, claimant: str = "",
                      version: datetime | None = None) -> bool:
        """Take the right to act on a due channel: True for exactly one renewer run.

        Conditional on the channel still being in `state` and unclaimed (or its
        claim expired), so two runs never both renew one channel. With `version`
        (the row as the renewer's query returned it, in `state` and unclaimed) the
        claim is written conditioned on it without a read; if anyone wrote the
        record since (another run's claim, a notification recorded), it is read
        and judged as usual, so a busy channel is still claimed.
        """
        ref = self._channel(channel_id)
        fields = {"claimed_until": until, "claimed_by": claimant}
        if version is not None:
            try:
                with _translated():
                    ref.update(fields, option=self._client.write_option(
                        last_update_time=version))
                return True
            except StoreError as err:
                if isinstance(err.__cause__, gexc.NotFound):
                    return False
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
        with _translated():
            snapshot = ref.get()
        data = snapshot.to_dict() or {}
        claimed = data.get("claimed_until")
        if not snapshot.exists or data.get("state") != state or (
                claimed is not None and claimed > now):
            return False
        try:
            with _translated():  # conditional: whoever writes first wins
                ref.update(fields, option=self._client.write_option(
                    last_update_time=snapshot.update_time))
        except StoreError as err:
            if isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted | gexc.NotFound):
                return False
            raise
        return True

    def claim_held(self, channel_id: str, claimant: str) -> Channel | None:
        with _translated():
            snapshot = self._channel(channel_id).get()
        data = snapshot.to_dict() or {}
        if not snapshot.exists or data.get("claimed_by") != claimant:
            return None
        return _channel(channel_id, data, snapshot.update_time)

    def due_channels(self, state: str, before: datetime, limit: int,
                     after: RowCursor | None = None, shard: tuple[int, int] | None = None,
                     ) -> list[tuple[Channel, dict[str, Any]]]:
        """Channels in `state` expiring at or before `before`, soonest first (indexed
        on (state, expiration), or with `shard` on (state, shard, expiration): an
        `in` filter, which Firestore answers in `expiration` order across its
        values); `after` continues past the (expiration, id) read last."""
        query = self._client.collection(CHANNELS).where(filter=FieldFilter("state", "==", state))
        if shard is not None:
            values = list(shard_values(*shard))
            query = query.where(filter=FieldFilter("shard", "==", values[0]) if len(values) == 1
                                else FieldFilter("shard", "in", values))
        query = (query.where(filter=FieldFilter("expiration", "<=", before))
                 .order_by("expiration").order_by("__name__").limit(limit))
        if after is not None:
            query = query.start_after([after[0], self._channel(after[1])])
        with _translated():
            return [(_channel(s.id, s.to_dict() or {}, s.update_time), s.to_dict() or {})
                    for s in query.stream()]

    def assign_shards(self, channel_ids: Sequence[str]) -> int:
        """`update` (never `set`): a record deleted meanwhile stays deleted. A batch
        fails whole if one of its records is gone; then each is written alone."""
        written = 0
        for start in range(0, len(channel_ids), WRITE_BATCH):
            chunk = channel_ids[start:start + WRITE_BATCH]
            batch = self._client.batch()
            for channel_id in chunk:
                batch.update(self._channel(channel_id), {"shard": channel_shard(channel_id)})
            try:
                with _translated():
                    batch.commit()
                written += len(chunk)
                continue
            except StoreError as err:
                if not isinstance(err.__cause__, gexc.NotFound):
                    raise
            for channel_id in chunk:
                try:
                    with _translated():
                        self._channel(channel_id).update({"shard": channel_shard(channel_id)})
                    written += 1
                except StoreError as err:
                    if not isinstance(err.__cause__, gexc.NotFound):
                        raise
        return written

    def shard_backfill(self) -> dict[str, Any]:
        with _translated():
            return self._client.collection(RENEWER).document(SHARD_BACKFILL).get().to_dict() or {}

    def save_shard_backfill(self, fields: dict[str, Any]) -> None:
        with _translated():
            self._client.collection(RENEWER).document(SHARD_BACKFILL).set(fields)

    # -- the renewer's subscription queries -------------------------------------

    def subscriptions_where(self, field: str, before: datetime, limit: int,
                            after: RowCursor | None = None,
                            ) -> list[tuple[Subscription, dict[str, Any]]]:
        """Subscriptions whose `field` is at or before `before`, oldest first: a range
        on one field (its automatic single-field index; documents where it is null
        or absent are not in the range); `after` continues past the (value, id) read
        last. The renewer's sort keys (`sweep_at`, `safety_net_at`, `deleting_since`)
        are set only while there is something to look at."""
        query = (self._client.collection(SUBSCRIPTIONS)
                 .where(filter=FieldFilter(field, "<=", before))
                 .order_by(field).order_by("__name__").limit(limit))
        if after is not None:
            query = query.start_after([after[0], self._sub(after[1])])
        with _translated():
            return [(_subscription(s.id, s.to_dict() or {}), s.to_dict() or {})
                    for s in query.stream()]

    def oldest_request(self) -> datetime | None:
        """`requested_at` of the oldest recorded request of an active subscription."""
        query = (self._client.collection(SUBSCRIPTIONS)
                 .where(filter=FieldFilter("status", "==", ACTIVE))
                 .where(filter=FieldFilter("requested_at", ">", _EPOCH))
                 .order_by("requested_at").limit(1))
        with _translated():
            found = [s.to_dict() or {} for s in query.stream()]
        return found[0].get("requested_at") if found else None

    # -- lifecycle entries ------------------------------------------------------

    def record_event(self, sub_id: str, kind: str, details: dict[str, Any],
                     now: datetime) -> int:
        """One transaction on `state/writer`, like a run's page commit: the entry takes
        `change_seq + 1`, so it is ordered with the event entries (a run's commits and
        this one serialise on the same document) and published by the same outbox."""
        sub_ref = self._sub(sub_id)
        state_ref = sub_ref.collection(STATE).document(WRITER)

        @firestore.transactional
        def write(transaction: Any) -> int:
            found = {s.reference.path: s for s in self._client.get_all(
                [sub_ref, state_ref], transaction=transaction)}
            sub_snap = found.get(sub_ref.path)
            if sub_snap is None or not sub_snap.exists:
                raise LookupError(sub_id)
            state_snap = found.get(state_ref.path)
            state = (state_snap.to_dict() if state_snap is not None else None) or {}
            return append_lifecycle_entry(transaction, sub_ref, state, kind, details, now,
                                          expire_at=now + self._feed_retention,
                                          outbox=self._outbox)

        with _translated():
            # More attempts than the default five: it competes with a run's page
            # commits on `state/writer`, which it must never make fail.
            return int(write(self._client.transaction(max_attempts=RECORD_ATTEMPTS)))

    def _writer_in(self, transaction: Any, sub_id: str) -> dict[str, Any]:
        writer = self._sub(sub_id).collection(STATE).document(WRITER)
        return writer.get(transaction=transaction).to_dict() or {}

    def _entry_fields(self, transaction: Any, sub_id: str, state: dict[str, Any],
                      draft: LifecycleDraft, now: datetime) -> dict[str, Any]:
        """Write `draft` as the entry after `state`'s `change_seq`; the `state/writer`
        fields that go with it. The outbox is marked when this process knows a topic,
        or the outbox already runs (a process without the topic setting, e.g. the CLI
        or the api, must not stop it)."""
        first = int(state.get("change_seq") or 0)
        seq, _ = append_lifecycle(transaction, self._sub(sub_id).collection(CHANGES), state,
                                  [draft], now, now + self._feed_retention)
        update: dict[str, Any] = {"change_seq": seq}
        if self._outbox or state.get("published_seq") is not None:
            update.update(outbox_fields(state, outbox=True, first=first, change_seq=seq,
                                        now=now))
        return update

    def _append(self, transaction: Any, sub_id: str, state: dict[str, Any],
                draft: LifecycleDraft, now: datetime) -> int:
        """`_entry_fields`, written to `state/writer`; the entry's seq."""
        update = self._entry_fields(transaction, sub_id, state, draft, now)
        writer = self._sub(sub_id).collection(STATE).document(WRITER)
        transaction.set(writer, update, merge=True)
        return int(update["change_seq"])

def append_lifecycle_entry(transaction: Any, sub_ref: Any, state: dict[str, Any], kind: str,
                           details: dict[str, Any], now: datetime, *, expire_at: datetime,
                           outbox: bool, state_fields: dict[str, Any] | None = None) -> int:
    """Inside a transaction that read the subscription's `state/writer` as `state`: write
    the lifecycle entry `change_seq + 1` and move `change_seq` (with the outbox marks, and
    `state_fields` in the same write); its `seq`. The accounts' follow and leave
    transactions write theirs through this too."""
    first = int(state.get("change_seq") or 0)
    seq = first + 1
    transaction.set(sub_ref.collection(CHANGES).document(seq_id(seq)), {
        "seq": seq, "kind": kind, "event_id": None, "recurring_event_id": None,
        "fields": {}, "details": codec.escape(dict(details)), "etag": None,
        "at": now, "expire_at": expire_at,
    })
    update: dict[str, Any] = {**(state_fields or {}), "change_seq": seq}
    # Marked when this process knows a topic, or the outbox already runs (a process
    # without the topic setting, e.g. the CLI, must not stop it).
    if outbox or state.get("published_seq") is not None:
        update.update(outbox_fields(state, outbox=True, first=first, change_seq=seq, now=now))
    transaction.set(sub_ref.collection(STATE).document(WRITER), update, merge=True)
    return seq
