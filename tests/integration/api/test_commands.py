"""The API's lifecycle adapter over the real `SubscriptionService`
(`functions.app.subscription_service`) on the Firestore, Cloud Tasks and
Calendar emulators: guards for no-op and forbidden transitions, resync requests,
and switching an existing subscription to a freshly sealed OAuth grant."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from functions import app
from functions.adapters.firestore.credentials import CredentialVault
from functions.api.wiring import ServiceCommands
from functions.config import Settings
from functions.errors import InvalidTransition, SubscriptionNotFound
from tests.conftest import TEST_PROJECT

USER = "cleo@example.com"
KEY = base64.b64encode(b"a" * 32).decode()


@pytest.fixture
def wired(firestore_db: Any, tasks_emulator: str, tasks_queue: str,
          calendar: Any) -> Iterator[tuple[ServiceCommands, Any, CredentialVault, str]]:
    region, queue = tasks_queue.split("/locations/")[1].split("/queues/")
    settings = Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": TEST_PROJECT, "CALSYNC_REGION": region,
        "CALSYNC_TASKS_QUEUE": queue, "CALSYNC_WORKER_URL": "http://127.0.0.1:9/",
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "CALSYNC_CHANNEL_TOKEN_KEYS": "k1:" + KEY, "CALSYNC_CREDENTIAL_KEYS": "c1:" + KEY,
        "CLOUD_TASKS_EMULATOR_HOST": tasks_emulator,
        "CALENDAR_API_ENDPOINT": calendar.api_endpoint,
        "CALSYNC_OAUTH_TOKEN_URI": calendar.token_uri, "CALSYNC_OAUTH_CLIENT_ID": "client-1",
        "CALSYNC_OAUTH_CLIENT_SECRET": "secret-1",
    })
    app.reset()
    vault = CredentialVault(firestore_db, settings.credential_keys)
    commands = ServiceCommands(lambda: app.subscription_service(settings), app.store(settings),
                               lambda: vault)
    calendar_id = calendar.control.create_calendar(USER)["id"]
    try:
        yield commands, firestore_db, vault, calendar_id
    finally:
        app.reset()


def status(db: Any, sub_id: str) -> dict[str, Any]:
    return db.collection("subscriptions").document(sub_id).get().to_dict() or {}


def test_transitions_through_the_service(wired: Any) -> None:
    commands, db, _, calendar_id = wired
    done = commands.subscribe(calendar_id, USER, "bearer", {"tenant": "t1"})
    assert status(db, done.sub_id)["labels"] == {"tenant": "t1"}
    commands.pause(done.sub_id)
    commands.pause(done.sub_id)  # already paused: a no-op
    assert status(db, done.sub_id)["status"] == "paused"
    with pytest.raises(InvalidTransition):
        commands.resync(done.sub_id, full=False)
    commands.resume(done.sub_id)
    commands.resume(done.sub_id)
    assert status(db, done.sub_id)["status"] == "active"
    commands.resync(done.sub_id, full=True)
    assert status(db, done.sub_id)["full_resync_requested"] == 1
    with pytest.raises(SubscriptionNotFound):
        commands.pause("missing")
    db.collection("subscriptions").document(done.sub_id).update({"status": "deleting"})
    for change in (commands.pause, commands.resume):
        with pytest.raises(InvalidTransition):
            change(done.sub_id)


def test_a_new_grant_replaces_the_old_and_resumes_a_subscription_awaiting_it(
        wired: Any) -> None:
    commands, db, vault, calendar_id = wired
    old_ref = vault.store_refresh_token("rt:" + USER)
    done = commands.subscribe(calendar_id, USER, old_ref, {})
    db.collection("subscriptions").document(done.sub_id).update(
        {"status": "error", "last_error": "reauthorization_required: token revoked"})
    new_ref = vault.store_refresh_token("rt:" + USER)
    commands.reauthorize(done.sub_id, new_ref)
    stored = status(db, done.sub_id)
    assert stored["credentials_ref"] == new_ref and stored["status"] == "active"
    old_id = old_ref.split(":", 1)[1]
    assert not db.collection("credentials").document(old_id).get().exists
    assert vault.refresh_token(new_ref.split(":", 1)[1]) == "rt:" + USER


def test_unsubscribe_through_the_service(wired: Any) -> None:
    commands, db, _, calendar_id = wired
    done = commands.subscribe(calendar_id, USER, "bearer", {})
    commands.unsubscribe(done.sub_id)
    assert status(db, done.sub_id).get("status") in (None, "deleting")
