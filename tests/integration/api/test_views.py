"""Subscriptions as the API shows them, read from the real Firestore emulator:
the JSON shape, channel and error, and listing by status and labels with page tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.views import FirestoreSubscriptionRecords
from functions.api.errors import ApiError
from functions.api.tokens import PageTokens
from functions.api.views import SubscriptionViews
from tests.integration.api.feedwriter import create_subscription

KEYS = {"id", "calendar_id", "owner", "credentials", "status", "labels", "created_at",
        "last_synced_at", "last_notification_at", "change_seq", "complete_as_of", "channel",
        "error"}


@pytest.fixture
def views(firestore_db: Any) -> SubscriptionViews:
    return SubscriptionViews(FirestoreSubscriptionRecords(firestore_db), PageTokens([b"k" * 32]))


def test_one_subscription_with_its_channel_feed_position_and_error(
        firestore_db: Any, views: SubscriptionViews) -> None:
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    create_subscription(firestore_db, "s1", credentials_ref="oauth:abc", status="error",
                        labels={"tenant": "t1"}, channel_id="ch1", last_synced_at=at,
                        last_error="CredentialsRejected: invalid_grant", last_error_at=at)
    sub = firestore_db.collection("subscriptions").document("s1")
    sub.collection("state").document("writer").set({"change_seq": 42})
    firestore_db.collection("channels").document("ch1").set(
        {"sub_id": "s1", "state": "active", "expiration": at + timedelta(days=7)})
    view = views.get("s1")
    assert view is not None and set(view) == KEYS
    assert (view["credentials"], view["status"], view["change_seq"]) == ("oauth", "error", 42)
    assert view["labels"] == {"tenant": "t1"}
    assert view["channel"] == {"state": "active", "expiration": "2026-12-07T12:00:00.000000Z"}
    assert view["error"] == {"reason": "credentials_rejected",
                             "message": "CredentialsRejected: invalid_grant",
                             "at": "2026-11-30T12:00:00.000000Z"}
    assert view["last_synced_at"] == "2026-11-30T12:00:00.000000Z"
    assert views.get("missing") is None


def test_error_reasons_and_no_error_is_null(firestore_db: Any,
                                            views: SubscriptionViews) -> None:
    create_subscription(firestore_db, "s1", status="error", last_error="refresh refused",
                        last_error_reason="reauthorization_required")
    create_subscription(firestore_db, "s2")
    create_subscription(firestore_db, "s3", status="error",
                        last_error="CalendarGone: calendar_not_found: 404 Not Found")
    create_subscription(firestore_db, "s4", status="error",
                        last_error="CredentialsRejected: reauthorization_required: revoked")
    reasons = {s: views.get(s)["error"]["reason"]  # type: ignore[index]
               for s in ("s1", "s3", "s4")}
    assert reasons == {"s1": "reauthorization_required", "s3": "calendar_not_found",
                       "s4": "reauthorization_required"}
    plain = views.get("s2")
    assert plain is not None
    assert (plain["error"], plain["channel"], plain["change_seq"]) == (None, None, 0)
    assert plain["credentials"] == "dwd"


def test_listing_filters_and_pages(firestore_db: Any, views: SubscriptionViews) -> None:
    for n in range(7):
        create_subscription(firestore_db, f"s{n}", status="paused" if n % 2 else "active",
                            labels={"tenant": f"t{n % 3}", "tier-x": "gold" if n < 4 else ""})
    seen, token = [], None
    while True:
        page, token = views.search(None, (), token, 3)
        seen += [s["id"] for s in page]
        if token is None:
            break
    assert seen == [f"s{n}" for n in range(7)]
    active, _ = views.search("active", (), None, 100)
    assert [s["id"] for s in active] == ["s0", "s2", "s4", "s6"]
    both, _ = views.search("active", (("tenant", "t0"), ("tier-x", "gold")), None, 100)
    assert [s["id"] for s in both] == ["s0"]
    empty_value, _ = views.search(None, (("tier-x", ""),), None, 100)
    assert [s["id"] for s in empty_value] == ["s4", "s5", "s6"]
    first, token = views.search("active", (), None, 2)
    assert token is not None and [s["id"] for s in first] == ["s0", "s2"]
    with pytest.raises(ApiError):
        views.search("paused", (), token, 2)  # a token belongs to its filters
    with pytest.raises(ApiError):
        views.search("active", (), token[:-3], 2)
