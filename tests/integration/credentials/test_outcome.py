"""What a sync run does with each side's failure, and the classifier on google-auth's errors.

A run whose credentials fail for our reasons answers transient (the worker's
500: Cloud Tasks retries) and leaves the subscription `active` with no error;
the user's own refusal puts that subscription in `error` with a reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.auth import exceptions as auth_exceptions
from google.oauth2 import _client

from functions.adapters.firestore.credentials import CredentialVault
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.google.calendar import GoogleCalendar
from functions.adapters.google.credentials import (
    BEARER_KIND,
    DELEGATION_KIND,
    USER_KIND,
    GoogleCredentialsProvider,
    auth_failure,
)
from functions.adapters.google.tasks import CloudTasksQueue
from functions.errors import (
    CALENDAR_ACCESS_LOST,
    REAUTHORIZATION_REQUIRED,
    CalendarUnavailable,
    CredentialsRejected,
    Misconfigured,
)
from functions.model import Subscription
from functions.sync.engine import Outcome, SyncEngine
from tests.integration.credentials.test_refresh import KEYS, _settings
from tests.integration.credentials.test_whose_failure import (
    INVALID_JWT_SIGNATURE,
    UNAUTHORIZED_CLIENT,
    Stub,
    _key_file,
)

OWNER = "fay@example.com"


def _engine(calendar: Any, firestore_db: Any, tasks_emulator: str, tasks_queue: str,
            provider: GoogleCredentialsProvider) -> tuple[SyncEngine, FirestoreStore]:
    queue_name = tasks_queue.rsplit("/", 1)[1]
    settings = _settings(calendar, CALSYNC_TASKS_QUEUE=queue_name,
                         CLOUD_TASKS_EMULATOR_HOST=tasks_emulator)
    store = FirestoreStore(firestore_db)
    port = GoogleCalendar(provider, api_endpoint=calendar.api_endpoint)
    return SyncEngine(store, port, CloudTasksQueue(settings)), store


def _requested(store: FirestoreStore, sub: Subscription) -> None:
    store.save_subscription(sub)
    assert store.record_sync_request(sub.id, datetime.now(UTC)).needs_task


def test_our_misconfiguration_is_retried_and_leaves_the_subscription_alone(
    calendar: Any, firestore_db: Any, tasks_emulator: str, tasks_queue: str, tmp_path: Path
) -> None:
    stub = Stub()
    try:
        stub.answer = (401, UNAUTHORIZED_CLIENT)
        provider = GoogleCredentialsProvider(_settings(
            calendar, CALSYNC_OAUTH_TOKEN_URI=stub.url + "/token",
            CALSYNC_DELEGATION_KEY_FILE=_key_file(tmp_path, stub.url + "/token")), vault=None)
        engine, store = _engine(calendar, firestore_db, tasks_emulator, tasks_queue, provider)
        sub = Subscription("sub-ours", "primary", OWNER, credentials_ref="dwd")
        _requested(store, sub)
        report = engine.run(sub.id)
    finally:
        stub.close()
    assert report.outcome is Outcome.MISCONFIGURED and "Misconfigured" in (report.error or "")
    after = store.get_subscription(sub.id)
    assert after is not None and after.status == "active" and after.last_error is None
    assert store.get_writer_state(sub.id).get("lease_until") is None  # released for the retry


def test_the_users_revoked_grant_puts_only_that_subscription_in_error(
    calendar: Any, firestore_db: Any, tasks_emulator: str, tasks_queue: str
) -> None:
    calendar.control.register_refresh_token("rt-fay", OWNER)
    vault = CredentialVault(firestore_db, KEYS)
    provider = GoogleCredentialsProvider(_settings(calendar), vault)
    engine, store = _engine(calendar, firestore_db, tasks_emulator, tasks_queue, provider)
    sub = Subscription("sub-user", "primary", OWNER,
                       credentials_ref=vault.store_refresh_token("rt-fay"))
    _requested(store, sub)
    calendar.control.set_invalid_grant(OWNER)
    report = engine.run(sub.id)
    assert report.outcome is Outcome.FAILED
    after = store.get_subscription(sub.id)
    assert after is not None and after.status == "error"
    assert REAUTHORIZATION_REQUIRED in (after.last_error or "")


def _refresh_error(body: dict[str, Any], retryable: bool = False) -> Exception:
    """The RefreshError exactly as google-auth raises it for a token endpoint's answer."""
    try:
        _client._handle_error_response(body, retryable)
    except auth_exceptions.RefreshError as err:
        return err
    raise AssertionError("google-auth did not raise")


@pytest.mark.parametrize(("body", "kind", "expected", "reason"), [
    ({"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
     USER_KIND, CredentialsRejected, REAUTHORIZATION_REQUIRED),
    ({"error": "invalid_grant", "error_description": "Bad Request"},
     USER_KIND, CredentialsRejected, REAUTHORIZATION_REQUIRED),
    ({"error": "invalid_grant", "error_description": "reauth related error (invalid_rapt)",
      "error_subtype": "invalid_rapt"}, USER_KIND, CredentialsRejected, REAUTHORIZATION_REQUIRED),
    (INVALID_JWT_SIGNATURE, DELEGATION_KIND, Misconfigured, None),
    (INVALID_JWT_SIGNATURE, None, Misconfigured, None),
    ({"error": "invalid_grant", "error_description": "Invalid email or User ID"},
     DELEGATION_KIND, CredentialsRejected, CALENDAR_ACCESS_LOST),
    (UNAUTHORIZED_CLIENT, DELEGATION_KIND, Misconfigured, None),
    (UNAUTHORIZED_CLIENT, USER_KIND, Misconfigured, None),
    ({"error": "invalid_client", "error_description": "Unauthorized"},
     USER_KIND, Misconfigured, None),
    ({"error": "invalid_scope", "error_description": "Bad scope"},
     DELEGATION_KIND, Misconfigured, None),
])
def test_refresh_errors_are_classified_by_whose_they_are(
    body: dict[str, Any], kind: str | None, expected: type[Exception], reason: str | None
) -> None:
    error = auth_failure(_refresh_error(body), kind)
    assert type(error) is expected
    if reason is not None:
        assert getattr(error, "reason", None) == reason and reason in str(error)


def test_transient_refresh_and_transport_failures_are_transient() -> None:
    retryable = _refresh_error({"error": "internal_failure"}, retryable=True)
    assert isinstance(auth_failure(retryable, USER_KIND), CalendarUnavailable)
    down = auth_exceptions.TransportError("connection refused")
    assert isinstance(auth_failure(down, DELEGATION_KIND), CalendarUnavailable)
    exhausted = auth_exceptions.TransportError("exhausted signBlob endpoint retries")
    assert isinstance(auth_failure(exhausted, DELEGATION_KIND), CalendarUnavailable)
    denied = auth_exceptions.TransportError(
        "Error calling the IAM signBlob API: b'{\"error\": {\"code\": 403}}'")
    assert isinstance(auth_failure(denied, DELEGATION_KIND), Misconfigured)


def test_a_bare_access_token_refused_is_final_and_the_users() -> None:
    cannot = auth_exceptions.RefreshError(
        "The credentials do not contain the necessary fields need to refresh the access token.")
    rejected = auth_failure(cannot, BEARER_KIND)
    assert isinstance(rejected, CredentialsRejected)
    assert rejected.reason == REAUTHORIZATION_REQUIRED
    # Refresh fields missing on credentials we built to refresh: our bug, not the user's.
    assert isinstance(auth_failure(cannot, USER_KIND), Misconfigured)
