"""Firestore side of the subscription lifecycle and the renewer's indexed queries.

The sync run's own reads and writes live in `store.py`; this module creates,
pauses, fences and deletes subscriptions, tracks channels through their
lifecycle, and answers the renewer's queries (each backed by an index in
terraform/, listed in `store.QUERIES`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.channel_store import CHANNELS, Channel, ResourceMismatch, _channel
from functions.credentials import CREDENTIALS_COLLECTION, OAUTH_PREFIX
from functions.model import ACTIVE, DELETING, Subscription
from functions.store import SUBSCRIPTIONS, _subscription, _translated

EVENTS = "events"
CHANGES = "changes"
STATE = "state"
WRITER = "writer"
DELETE_BATCH = 400


class SubscriptionStore:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client

    def _sub(self, sub_id: str) -> Any:
        return self._client.collection(SUBSCRIPTIONS).document(sub_id)

    def _channel(self, channel_id: str) -> Any:
        return self._client.collection(CHANNELS).document(channel_id)

    # -- subscriptions --------------------------------------------------------

    def create(self, sub: Subscription, now: datetime) -> None:
        with _translated():
            self._sub(sub.id).create({
                "calendar_id": sub.calendar_id, "owner": sub.owner,
                "credentials_ref": sub.credentials_ref, "status": ACTIVE,
                "last_error": None, "requested_gen": 0, "queued_gen": 0,
                "requested_at": None, "retry_at": None, "last_synced_at": None,
                "created_at": now, "channel_id": None, "channel_expiration": None,
            })

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

    def begin_delete(self, sub_id: str, now: datetime) -> bool:
        """Mark `deleting` and bump the lease generation: an in-flight run writes nothing more."""
        @firestore.transactional
        def fence(transaction: Any) -> bool:
            snapshot = self._sub(sub_id).get(transaction=transaction)
            writer = self._sub(sub_id).collection(STATE).document(WRITER)
            state = writer.get(transaction=transaction).to_dict() or {}
            if not snapshot.exists:
                return False
            transaction.update(self._sub(sub_id), {"status": DELETING, "deleting_since": now})
            transaction.set(writer, {
                "lease_generation": int(state.get("lease_generation") or 0) + 1,
                "lease_until": None,
            }, merge=True)
            return True

        with _translated():
            return bool(fence(self._client.transaction()))

    def delete_tree(self, sub_id: str, credentials_ref: str) -> int:
        """Delete snapshots, feed, state, channels, credentials, then the document.

        Batched, and safe to re-run after an interruption: the subscription
        document goes last, so `deleting` stays visible until all else is gone.
        """
        deleted = 0
        sub = self._sub(sub_id)
        with _translated():
            for name in (EVENTS, CHANGES, STATE):
                deleted += self._delete_query(sub.collection(name))
            deleted += self._delete_query(
                self._client.collection(CHANNELS).where(filter=FieldFilter("sub_id", "==", sub_id)))
            if credentials_ref.startswith(OAUTH_PREFIX):
                self._client.collection(CREDENTIALS_COLLECTION).document(
                    credentials_ref[len(OAUTH_PREFIX):]).delete()
            sub.delete()
        return deleted + 1

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
            transaction.update(self._sub(sub_id), {"requested_at": None})
            return True

        with _translated():
            return bool(clear(self._client.transaction()))

    # -- channels -------------------------------------------------------------

    def channels_of(self, sub_id: str) -> list[Channel]:
        query = self._client.collection(CHANNELS).where(filter=FieldFilter("sub_id", "==", sub_id))
        with _translated():
            return [_channel(s.id, s.to_dict() or {}) for s in query.stream()]

    def channel_doc(self, channel_id: str) -> dict[str, Any]:
        with _translated():
            return self._channel(channel_id).get().to_dict() or {}

    def activate_channel(self, channel_id: str, sub_id: str, resource_id: str,
                         expiration: datetime) -> None:
        """Record the watch response; it must match a resource id learnt meanwhile."""
        @firestore.transactional
        def activate(transaction: Any) -> None:
            snapshot = self._channel(channel_id).get(transaction=transaction)
            known = (snapshot.to_dict() or {}).get("resource_id")
            if known is not None and known != resource_id:
                raise ResourceMismatch(channel_id)
            transaction.update(self._channel(channel_id), {
                "state": "active", "resource_id": resource_id, "expiration": expiration,
                "renewal_attempts": 0, "next_attempt_at": None, "last_error": None,
            })
            transaction.update(self._sub(sub_id), {
                "channel_id": channel_id, "channel_expiration": expiration,
            })

        with _translated():
            activate(self._client.transaction())

    def set_channel(self, channel_id: str, fields: dict[str, Any]) -> None:
        with _translated():
            self._channel(channel_id).update(fields)

    def due_channels(self, state: str, before: datetime, limit: int,
                     after: str | None = None) -> list[tuple[Channel, dict[str, Any]]]:
        """Channels in `state` expiring at or before `before`, soonest first (indexed);
        `after` (a channel id from the previous page) continues past it."""
        query = (self._client.collection(CHANNELS)
                 .where(filter=FieldFilter("state", "==", state))
                 .where(filter=FieldFilter("expiration", "<=", before))
                 .order_by("expiration").limit(limit))
        with _translated():
            if after is not None:
                cursor = self._channel(after).get()
                if cursor.exists:
                    query = query.start_after(cursor)
            return [(_channel(s.id, s.to_dict() or {}), s.to_dict() or {})
                    for s in query.stream()]

    # -- the renewer's subscription queries -------------------------------------

    def subscriptions_where(self, field: str, before: datetime,
                            limit: int) -> list[tuple[Subscription, dict[str, Any]]]:
        """Active subscriptions whose `field` is at or before `before` (indexed)."""
        query = (self._client.collection(SUBSCRIPTIONS)
                 .where(filter=FieldFilter("status", "==", ACTIVE))
                 .where(filter=FieldFilter(field, "<=", before))
                 .order_by(field).limit(limit))
        with _translated():
            return [(_subscription(s.id, s.to_dict() or {}), s.to_dict() or {})
                    for s in query.stream()]
