"""Accounts as the API shows them (`Account` in the OpenAPI document): the status and
health `lifecycle.accounts.AccountService.status` reads, in the `/v1` shape."""

from __future__ import annotations

from typing import Any

from functions.api.views import credentials_kind
from functions.model import rfc3339


def account_json(status: dict[str, Any]) -> dict[str, Any]:
    """`status`: the fields of an `AccountStatus`, as read (times as datetimes)."""
    error = status.get("last_error")
    channel_state = status.get("channel_state")
    return {
        "id": status["id"],
        "owner": status.get("owner"),
        "credentials": credentials_kind(str(status.get("credentials_ref") or "")),
        "status": status.get("status", "active"),
        "policy": status.get("policy") or {},
        "created_at": rfc3339(status.get("created_at")),
        "calendars_followed": int(status.get("calendars_followed") or 0),
        "last_list_sync_at": rfc3339(status.get("last_listed_at")),
        "last_notification_at": rfc3339(status.get("last_notification_at")),
        "channel": None if channel_state is None else {
            "state": channel_state, "expiration": rfc3339(status.get("channel_expiration"))},
        "error": None if not error else {
            "reason": status.get("last_error_reason") or "unknown", "message": str(error),
            "at": rfc3339(status.get("last_error_at"))},
    }
