"""Subscriptions with their writer state and current channel, as the API lists them
(`ports.SubscriptionRecords`): at most three document reads each, batched per page."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from functions.adapters.firestore.catalogue import CHANNELS, STATE, SUBSCRIPTIONS, WRITER
from functions.adapters.firestore.store import _translated
from functions.model import SubscriptionRecord
from functions.ports import SubscriptionRecords


class FirestoreSubscriptionRecords(SubscriptionRecords):
    def __init__(self, client: firestore.Client) -> None:
        self._client = client

    def get(self, sub_id: str) -> SubscriptionRecord | None:
        with _translated():
            snapshot = self._client.collection(SUBSCRIPTIONS).document(sub_id).get()
        if not snapshot.exists:
            return None
        return self._records([snapshot])[0]

    def search(self, status: str | None, labels: tuple[tuple[str, str], ...],
               after: str | None, limit: int,
               account: str | None = None) -> list[SubscriptionRecord]:
        collection = self._client.collection(SUBSCRIPTIONS)
        query: Any = collection
        if account is not None:
            query = query.where(filter=FieldFilter("account_id", "==", account))
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status))
        for key, value in labels:
            path = FieldPath("labels", key).to_api_repr()
            query = query.where(filter=FieldFilter(path, "==", value))
        query = query.order_by("__name__").limit(limit)
        if after is not None:
            query = query.start_after({"__name__": collection.document(after)})
        with _translated():
            snapshots = list(query.stream())
        return self._records(snapshots)

    def _records(self, snapshots: list[Any]) -> list[SubscriptionRecord]:
        """Records of `snapshots`, with their writer states and channels in one batched read."""
        if not snapshots:
            return []
        datas = [s.to_dict() or {} for s in snapshots]
        state_refs = [s.reference.collection(STATE).document(WRITER) for s in snapshots]
        channel_refs = [self._client.collection(CHANNELS).document(d["channel_id"])
                        for d in datas if isinstance(d.get("channel_id"), str)
                        and d["channel_id"]]
        with _translated():
            found = {s.reference.path: s.to_dict() or {}
                     for s in self._client.get_all(state_refs + channel_refs) if s.exists}
        records = []
        for snapshot, data, state_ref in zip(snapshots, datas, state_refs, strict=True):
            channel_id = data.get("channel_id")
            channel = None
            if isinstance(channel_id, str) and channel_id:
                channel = found.get(f"{CHANNELS}/{channel_id}")
            records.append(SubscriptionRecord(snapshot.id, data, found.get(state_ref.path, {}),
                                              channel))
        return records
