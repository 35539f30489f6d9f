"""The feed's documents in Firestore, as `api.feed.Feed` reads them (`ports.FeedStore`).

Each call that must be one consistent view is one read-only transaction: a
page of changes with `state/writer.change_seq`, the first page of snapshots
with it (the bootstrap's `as_of_seq`). Entries and snapshots come back
decoded (field names unescaped), sharing every part that held no escaped key.
"""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore import codec
from functions.adapters.firestore.catalogue import CHANGES, EVENTS, STATE, SUBSCRIPTIONS, WRITER
from functions.adapters.firestore.store import _translated, seq_id
from functions.errors import CursorAhead, EventMissing, SubscriptionNotFound
from functions.model import Snapshot
from functions.ports import FeedHead, FeedStore


def _data(snapshot: Any) -> dict[str, Any]:
    """A page's document data without `to_dict()`'s deep copy.

    The client already deep-copies each document into its snapshot; a second copy
    per document was a third of a 1,000-entry page's time (bench/api.py). The
    data is only read here, never changed.
    """
    data = getattr(snapshot, "_data", None)
    return data if isinstance(data, dict) else (snapshot.to_dict() or {})


class FirestoreFeedStore(FeedStore):
    def __init__(self, client: firestore.Client) -> None:
        self._client = client

    def _sub(self, sub_id: str) -> Any:
        return self._client.collection(SUBSCRIPTIONS).document(sub_id)

    def _head(self, sub_id: str, transaction: Any) -> FeedHead:
        """`change_seq` and the watermark of an existing subscription, read in
        `transaction`."""
        sub_ref, state_ref = self._sub(sub_id), self._sub(sub_id).collection(STATE).document(WRITER)
        found = {snap.reference.path: snap
                 for snap in self._client.get_all([sub_ref, state_ref], transaction=transaction)}
        sub_snap, state_snap = found.get(sub_ref.path), found.get(state_ref.path)
        if sub_snap is None or not sub_snap.exists:
            raise SubscriptionNotFound(sub_id)
        state = (state_snap.to_dict() if state_snap is not None else None) or {}
        return FeedHead(int(state.get("change_seq") or 0), state.get("complete_as_of"))

    def read_changes(self, sub_id: str, cursor: int,
                     limit: int) -> tuple[FeedHead, list[dict[str, Any]]]:
        feed = self._sub(sub_id).collection(CHANGES)

        @firestore.transactional
        def read(transaction: Any) -> tuple[FeedHead, list[dict[str, Any]]]:
            head = self._head(sub_id, transaction)
            if cursor > head.change_seq:
                raise CursorAhead(cursor, head.change_seq)
            if cursor == head.change_seq:
                return head, []
            scan = (feed.where(filter=FieldFilter("seq", ">", cursor))
                    .order_by("seq").limit(limit))
            return head, [_data(s) for s in scan.stream(transaction=transaction)]

        with _translated():
            head, scanned = read(self._client.transaction(read_only=True))
        return head, [codec.decode_change(data) for data in scanned]

    def change_entry(self, sub_id: str, seq: int) -> dict[str, Any] | None:
        with _translated():
            data = self._sub(sub_id).collection(CHANGES).document(seq_id(seq)).get().to_dict()
        return None if data is None else codec.decode_change(data)

    def _events_query(self, sub_id: str, limit: int, include_deleted: bool) -> Any:
        query = self._sub(sub_id).collection(EVENTS)
        if not include_deleted:
            query = query.where(filter=FieldFilter("_deleted", "==", False))
        return query.order_by("__name__").limit(limit)

    def first_events(self, sub_id: str, limit: int,
                     include_deleted: bool) -> tuple[FeedHead, list[tuple[str, Snapshot]]]:
        query = self._events_query(sub_id, limit, include_deleted)

        @firestore.transactional
        def first(transaction: Any) -> tuple[FeedHead, list[Any]]:
            head = self._head(sub_id, transaction)
            return head, list(query.stream(transaction=transaction))

        with _translated():
            head, docs = first(self._client.transaction(read_only=True))
        return head, [(d.id, codec.decode_snapshot(_data(d))) for d in docs]

    def events_after(self, sub_id: str, after_id: str, limit: int,
                     include_deleted: bool) -> list[tuple[str, Snapshot]]:
        collection = self._sub(sub_id).collection(EVENTS)
        query = self._events_query(sub_id, limit, include_deleted).start_after(
            {"__name__": collection.document(after_id)})
        with _translated():
            if not self._sub(sub_id).get().exists:
                raise SubscriptionNotFound(sub_id)
            docs = list(query.stream())
        return [(d.id, codec.decode_snapshot(_data(d))) for d in docs]

    def event(self, sub_id: str, event_id: str) -> Snapshot:
        sub_ref = self._sub(sub_id)
        event_ref = sub_ref.collection(EVENTS).document(event_id)
        with _translated():
            found = {s.reference.path: s for s in self._client.get_all([sub_ref, event_ref])}
        sub_snap, event_snap = found.get(sub_ref.path), found.get(event_ref.path)
        if sub_snap is None or not sub_snap.exists:
            raise SubscriptionNotFound(sub_id)
        if event_snap is None or not event_snap.exists:
            raise EventMissing(event_id)
        return codec.decode_snapshot(event_snap.to_dict() or {})
