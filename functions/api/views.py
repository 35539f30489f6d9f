"""Subscriptions as the API shows them (DESIGN.md, "The /v1 contract").

The documents come from a `ports.SubscriptionRecords` (Firestore:
`adapters.firestore.views`): one subscription costs three document reads at
most (the subscription, its `state/writer` and its current channel), batched
per page when listing.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from functions.api.tokens import PageTokens
from functions.errors import CALENDAR_ACCESS_LOST, CALENDAR_NOT_FOUND, REAUTHORIZATION_REQUIRED
from functions.model import BEARER_REF, DWD_REF, OAUTH_PREFIX, SubscriptionRecord, rfc3339
from functions.ports import SubscriptionReader, SubscriptionRecords

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


def record_json(record: SubscriptionRecord) -> dict[str, Any]:
    return subscription_json(record.id, record.data, record.state, record.channel)


class SubscriptionViews(SubscriptionReader):
    def __init__(self, records: SubscriptionRecords, tokens: PageTokens) -> None:
        self._records = records
        self._tokens = tokens

    def get(self, sub_id: str) -> dict[str, Any] | None:
        record = self._records.get(sub_id)
        return None if record is None else record_json(record)

    def search(self, status: str | None, labels: tuple[tuple[str, str], ...],
               page_token: str | None, limit: int,
               account: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        # A page token is good only for the filters that issued it.
        filters: tuple[Any, ...] = (status, sorted(set(labels)))
        if account is not None:
            filters += (account,)
        scope = hashlib.sha256(repr(filters).encode()).hexdigest()[:32]
        after = None
        if page_token is not None:
            after = self._tokens.decode(page_token, LIST_TOKEN, scope).get("l")
            if not isinstance(after, str):
                raise ValueError("page token fields")  # unreachable for a token we signed
        found = self._records.search(status, labels, after, limit + 1, account=account)
        page = found[:limit]
        token = (self._tokens.encode(LIST_TOKEN, scope, {"l": page[-1].id})
                 if len(found) > limit else None)
        return [record_json(record) for record in page], token
