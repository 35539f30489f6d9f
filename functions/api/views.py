"""Subscriptions as the API shows them, read from Firestore.

One subscription costs three document reads at most (the subscription, its
`state/writer` and its current channel), batched per page when listing.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from functions.adapters.firestore.catalogue import CHANNELS, STATE, SUBSCRIPTIONS, WRITER
from functions.adapters.firestore.store import _translated
from functions.adapters.google.credentials import BEARER_REF, DWD_REF, OAUTH_PREFIX
from functions.api.feed import rfc3339
from functions.api.tokens import PageTokens
from functions.api_ports import SubscriptionReader
from functions.errors import CALENDAR_ACCESS_LOST, CALENDAR_NOT_FOUND, REAUTHORIZATION_REQUIRED

LIST_TOKEN = "subscriptions"
PERMANENT_REASONS = (REAUTHORIZATION_REQUIRED, CALENDAR_ACCESS_LOST, CALENDAR_NOT_FOUND)


def credentials_kind(ref: str) -> str:
    if ref.startswith(OAUTH_PREFIX):
        return "oauth"
    return BEARER_REF if ref == BEARER_REF else DWD_REF


def _reason(data: dict[str, Any]) -> str:
    """A stable word for the error: a stored reason, one of the permanent errors'
    reasons named in the message, else the error's own name in snake case."""
    stored = data.get("last_error_reason")
    if isinstance(stored, str) and stored:
        return stored
    text = str(data.get("last_error") or "")
    for reason in PERMANENT_REASONS:
        if re.search(rf"\b{reason}\b", text):
            return reason
    head = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", text)
    if head is None:
        return "unknown"
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", head.group(1)).lower()


def subscription_json(sub_id: str, data: dict[str, Any], state: dict[str, Any],
                      channel: dict[str, Any] | None) -> dict[str, Any]:
    last_error = data.get("last_error")
    return {
        "id": sub_id,
        "calendar_id": data.get("calendar_id"),
        "owner": data.get("owner"),
        "credentials": credentials_kind(str(data.get("credentials_ref") or "")),
        "status": data.get("status", "active"),
        "labels": dict(data.get("labels") or {}),
        "created_at": rfc3339(data.get("created_at")),
        "last_synced_at": rfc3339(data.get("last_synced_at")),
        "last_notification_at": rfc3339(data.get("last_notification_at")),
        "change_seq": int(state.get("change_seq") or 0),
        "channel": None if channel is None else {
            "state": channel.get("state"), "expiration": rfc3339(channel.get("expiration"))},
        "error": None if not last_error else {
            "reason": _reason(data), "message": str(last_error),
            "at": rfc3339(data.get("last_error_at"))},
    }


class FirestoreSubscriptions(SubscriptionReader):
    def __init__(self, client: firestore.Client, tokens: PageTokens) -> None:
        self._client = client
        self._tokens = tokens

    def get(self, sub_id: str) -> dict[str, Any] | None:
        with _translated():
            snapshot = self._client.collection(SUBSCRIPTIONS).document(sub_id).get()
        if not snapshot.exists:
            return None
        return self._render([snapshot])[0]

    def search(self, status: str | None, labels: tuple[tuple[str, str], ...],
             page_token: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        collection = self._client.collection(SUBSCRIPTIONS)
        query: Any = collection
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status))
        for key, value in labels:
            path = FieldPath("labels", key).to_api_repr()
            query = query.where(filter=FieldFilter(path, "==", value))
        query = query.order_by("__name__").limit(limit + 1)
        scope = hashlib.sha256(repr((status, sorted(set(labels)))).encode()).hexdigest()[:32]
        if page_token is not None:
            last = self._tokens.decode(page_token, LIST_TOKEN, scope).get("l")
            if not isinstance(last, str):
                raise ValueError("page token fields")  # unreachable for a token we signed
            query = query.start_after({"__name__": collection.document(last)})
        with _translated():
            snapshots = list(query.stream())
        page = snapshots[:limit]
        token = (self._tokens.encode(LIST_TOKEN, scope, {"l": page[-1].id})
                 if len(snapshots) > limit else None)
        return self._render(page), token

    def _render(self, snapshots: list[Any]) -> list[dict[str, Any]]:
        """Views of `snapshots`, with their writer states and channels in two batched reads."""
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
        views = []
        for snapshot, data, state_ref in zip(snapshots, datas, state_refs, strict=True):
            channel_id = data.get("channel_id")
            channel = None
            if isinstance(channel_id, str) and channel_id:
                channel = found.get(f"{CHANNELS}/{channel_id}")
            views.append(subscription_json(snapshot.id, data, found.get(state_ref.path, {}),
                                           channel))
        return views
