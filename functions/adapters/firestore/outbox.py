"""The store with the outbox: `FirestoreStore` plus what publishing reads and
writes in `state/writer` (DESIGN.md, "Delivery (outbox)"; functions/outbox.py).

Its commits keep the outbox's fields (`store.outbox_fields`: `published_seq`
rides on the run's fenced page and final commits, no transaction of its own);
the publish-only lease is fenced like every write of a run; the renewer's sweep
finds unpublished entries with collection-group queries on `state`
(`catalogue.COLLECTION_GROUP_QUERIES`): by `publish_sweep_at` when each is next
due, and by `publish_pending_since` for the oldest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore import codec
from functions.adapters.firestore.store import (
    CHANGES,
    FEED_RETENTION,
    STATE,
    WRITER,
    FirestoreStore,
    _subscription,
    _translated,
    outbox_fields,
)
from functions.model import ACTIVE, DELETING, Lease
from functions.ports import OutboxPosition, OutboxStore, PublishProgress, PublishRelease


class OutboxFirestoreStore(FirestoreStore, OutboxStore):
    """`FirestoreStore` whose commits keep the outbox, with the outbox's queries."""

    def __init__(self, client: firestore.Client, *,
                 feed_retention: timedelta = FEED_RETENTION) -> None:
        super().__init__(client, feed_retention=feed_retention, outbox=True)

    # -- the outbox (DESIGN.md, "Delivery (outbox)") -------------------------

    def outbox_position(self, sub_id: str) -> OutboxPosition:
        state = self.get_writer_state(sub_id)
        published = state.get("published_seq")
        return OutboxPosition(
            published_seq=None if published is None else int(published),
            change_seq=int(state.get("change_seq") or 0),
            lease_generation=int(state.get("lease_generation") or 0))

    def read_entries(self, sub_id: str, after: int, upto: int) -> list[dict[str, Any]]:
        if upto <= after:
            return []
        query = (
            self._sub(sub_id).collection(CHANGES)
            .where(filter=FieldFilter("seq", ">", after))
            .order_by("seq")
            .limit(upto - after)
        )
        with _translated():
            docs = [snapshot.to_dict() or {} for snapshot in query.stream()]
        return [codec.decode_change(doc) for doc in docs if int(doc.get("seq") or 0) <= upto]

    def advance_published(self, lease: Lease, progress: PublishProgress, now: datetime) -> None:
        sub_id = lease.subscription.id

        @firestore.transactional
        def advance(transaction: Any) -> None:
            state = self._fenced_state(transaction, lease)
            change_seq = int(state.get("change_seq") or 0)
            update = outbox_fields(state, outbox=True, first=change_seq, change_seq=change_seq,
                                   now=now, progress=progress)
            if update:
                transaction.update(self._state(sub_id), update)

        with _translated():
            advance(self._client.transaction())

    def acquire_publish_lease(self, sub_id: str, now: datetime, until: datetime) -> Lease | None:
        """The lease of a run that only publishes (nothing requested, or paused).

        Kept minimal: it bumps `lease_generation` (so every write stays fenced)
        and sets `lease_until`, but claims no request and leaves
        `lease_started_at` (MIN_SYNC_INTERVAL) alone.
        """
        @firestore.transactional
        def take(transaction: Any) -> Lease | None:
            sub_snap = self._sub(sub_id).get(transaction=transaction)
            state_snap = self._state(sub_id).get(transaction=transaction)
            state = state_snap.to_dict() or {}
            published = state.get("published_seq")
            if published is None or int(published) >= int(state.get("change_seq") or 0):
                return None
            sub = _subscription(sub_id, sub_snap.to_dict() or {}) if sub_snap.exists else None
            if sub is None:
                # Nothing of it will be published: leave the sweep's query, or the
                # sweep would queue a run for it on every tick.
                if (state.get("publish_pending_since") is not None
                        or state.get("publish_sweep_at") is not None):
                    transaction.update(self._state(sub_id), {
                        "publish_pending_since": None, "publish_sweep_at": None})
                return None
            # A subscription being deleted publishes too: its deletion waits for its
            # `subscription_deleted` message (DESIGN.md, "Accounts, lifecycle events").
            held_until = state.get("lease_until")
            if held_until is not None and held_until > now:
                return None
            generation = int(state.get("lease_generation") or 0) + 1
            transaction.set(self._state(sub_id), {
                "lease_generation": generation, "lease_until": until}, merge=True)
            return Lease(
                subscription=sub, generation=generation,
                claimed_gen=int(state.get("claimed_gen") or 0),
                sync_token=state.get("sync_token"), first_sync=state.get("sync_token") is None,
                started_at=now, until=until, complete_as_of=state.get("complete_as_of"))

        with _translated():
            return take(self._client.transaction())

    def release_publish_lease(self, lease: Lease, progress: PublishProgress | None,
                              now: datetime) -> PublishRelease:
        """Release a publish-only lease with the run's progress, and say whether a
        sync request waits: a task that arrived while this lease was held answered
        BUSY and is gone, and a sync run whose lease this one took (it had expired)
        ends LEASE_LOST with its claim unserved, so the caller queues the follow-up
        `commit_final` would (DESIGN.md, "Liveness"). Compared with `synced_gen`,
        not `claimed_gen`: a claim is not a sync."""
        sub_id = lease.subscription.id

        @firestore.transactional
        def release(transaction: Any) -> PublishRelease:
            state = self._fenced_state(transaction, lease)
            sub_snap = self._sub(sub_id).get(transaction=transaction)
            change_seq = int(state.get("change_seq") or 0)
            update: dict[str, Any] = {"lease_until": None}
            update.update(outbox_fields(state, outbox=True, first=change_seq,
                                        change_seq=change_seq, now=now, progress=progress))
            transaction.update(self._state(sub_id), update)
            published = int(update.get("published_seq", state.get("published_seq")) or 0)
            data = (sub_snap.to_dict() or {}) if sub_snap.exists else {}
            pending = (sub_snap.exists and data.get("status", ACTIVE) == ACTIVE
                       and int(data.get("requested_gen") or 0) > int(state.get("synced_gen") or 0))
            return PublishRelease(request_pending=bool(pending),
                                  backlog=max(change_seq - published, 0),
                                  deletion_due=bool(sub_snap.exists and data.get("status")
                                                    == DELETING and published >= change_seq))

        with _translated():
            return release(self._client.transaction())

    def pending_outboxes(self, before: datetime, limit: int,
                         after: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """A collection-group query on `state` (see `catalogue.COLLECTION_GROUP_QUERIES`):
        the outbox's age, and rows written before `publish_sweep_at` existed."""
        return self._outbox_rows("publish_pending_since", before, limit, after)

    def due_outboxes(self, before: datetime, limit: int,
                     after: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The sweep's collection-group query on `state`, by `publish_sweep_at`."""
        return self._outbox_rows("publish_sweep_at", before, limit, after)

    def move_outbox(self, row: dict[str, Any], sweep_at: datetime) -> bool:
        """Conditional on the row's update time as read: no transaction, and a run
        that wrote the row meanwhile (its lease, its progress, a failed attempt)
        wins; the sweep reads the row again then."""
        option = self._client.write_option(last_update_time=row["_updated"])
        with _translated():
            try:
                self._client.document(row["_path"]).update(
                    {"publish_sweep_at": sweep_at}, option=option)
            except (gexc.FailedPrecondition, gexc.NotFound):
                return False
        return True

    def _outbox_rows(self, key: str, before: datetime, limit: int,
                     after: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
        """`state/writer` rows with `key <= before`, by `key`; past `after` as it was
        read (the row may have moved since: a cursor read again would skip rows)."""
        query = (
            self._client.collection_group(STATE)
            .where(filter=FieldFilter(key, "<=", before))
            .order_by(key)
            .order_by("__name__")
            .limit(limit)
        )
        if after is not None:
            query = query.start_after({key: after[key],
                                       "__name__": self._client.document(after["_path"])})
        with _translated():
            rows = []
            for snapshot in query.stream():
                parent = snapshot.reference.parent.parent
                if snapshot.id == WRITER and parent is not None:
                    rows.append((parent.id, {**(snapshot.to_dict() or {}),
                                             "_path": snapshot.reference.path,
                                             "_updated": snapshot.update_time}))
        return rows
