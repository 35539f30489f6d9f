"""Whose credentials failed decides the outcome (DESIGN.md, Liveness).

Through real google-auth and the real google-api-python-client against the
Calendar emulator. The emulator's /token cannot answer `unauthorized_client`
or refuse a JWT's signature, and IAM is not emulated, so for those rows a
loopback stub answers exactly what Google's token endpoint (or IAM's signBlob)
answers, and the real client parses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from functions.adapters.firestore.credentials import CredentialVault
from functions.adapters.google.calendar import GoogleCalendar
from functions.adapters.google.channels import GoogleChannels
from functions.adapters.google.credentials import GoogleCredentialsProvider
from functions.errors import (
    CALENDAR_ACCESS_LOST,
    CALENDAR_NOT_FOUND,
    REAUTHORIZATION_REQUIRED,
    CalendarGone,
    CredentialsRejected,
    Misconfigured,
)
from functions.model import Subscription
from tests.integration.credentials.test_refresh import KEYS, _settings

OWNER = "erin@example.com"
UNAUTHORIZED_CLIENT = {
    "error": "unauthorized_client",
    "error_description": "Client is unauthorized to retrieve access tokens using this method, "
                         "or client not authorized for any of the scopes requested."}
INVALID_JWT_SIGNATURE = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
INVALID_JWT_TIME = {
    "error": "invalid_grant",
    "error_description": "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                         "reasonable timeframe. Check your iat and exp values in the JWT claim."}
INVALID_CLIENT = {"error": "invalid_client", "error_description": "The OAuth client was not found."}
IAM_DENIED = {"error": {
    "code": 403, "status": "PERMISSION_DENIED",
    "message": "Permission 'iam.serviceAccounts.signBlob' denied on resource (or it may not "
               "exist)."}}


class Stub:
    """A loopback server answering every POST with one status and JSON body."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, Any]] = (200, {})
        self.posts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(self.path)
                status, body = outer.answer
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    try:
        yield server
    finally:
        server.close()


def _key_file(tmp_path: Path, token_uri: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path / "delegation.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "calsync-test", "private_key_id": "k1",
        "private_key": pem, "client_email": "dwd@calsync-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri}))
    return str(path)


def _list(calendar: Any, provider: GoogleCredentialsProvider, sub: Subscription) -> Any:
    port = GoogleCalendar(provider, api_endpoint=calendar.api_endpoint)
    return port.list_page(sub, sync_token=None, page_token=None, page_size=10)


def _delegated(calendar: Any, tmp_path: Path, token_uri: str) -> GoogleCredentialsProvider:
    return GoogleCredentialsProvider(_settings(
        calendar, CALSYNC_OAUTH_TOKEN_URI=token_uri,
        CALSYNC_DELEGATION_KEY_FILE=_key_file(tmp_path, token_uri)), vault=None)


DWD_SUB = Subscription("s-dwd", "primary", OWNER, credentials_ref="dwd")


def test_users_revoked_grant_is_the_users_reauthorization(calendar: Any, firestore_db: Any) -> None:
    calendar.control.register_refresh_token("rt-erin", OWNER)
    vault = CredentialVault(firestore_db, KEYS)
    sub = Subscription("s", "primary", OWNER, credentials_ref=vault.store_refresh_token("rt-erin"))
    provider = GoogleCredentialsProvider(_settings(calendar), vault)
    assert _list(calendar, provider, sub).items == ()  # the grant works
    calendar.control.set_invalid_grant(OWNER)
    with pytest.raises(CredentialsRejected) as info:
        _list(calendar, provider, sub)  # a new adapter: it must refresh
    assert info.value.reason == REAUTHORIZATION_REQUIRED
    assert REAUTHORIZATION_REQUIRED in str(info.value) and "invalid_grant" in str(info.value)
    assert "rt-erin" not in str(info.value)


def test_delegated_owner_refused_is_the_users(calendar: Any, tmp_path: Path) -> None:
    provider = _delegated(calendar, tmp_path, calendar.token_uri)
    assert _list(calendar, provider, DWD_SUB).items == ()
    calendar.control.set_invalid_grant(OWNER)  # "Token has been expired or revoked."
    with pytest.raises(CredentialsRejected) as info:
        _list(calendar, provider, DWD_SUB)
    assert info.value.reason == CALENDAR_ACCESS_LOST


@pytest.mark.parametrize(("status", "body"), [
    (400, INVALID_JWT_SIGNATURE), (401, UNAUTHORIZED_CLIENT), (400, INVALID_JWT_TIME),
    (401, INVALID_CLIENT)])
def test_delegation_refused_by_the_token_endpoint_is_ours(
    calendar: Any, tmp_path: Path, stub: Stub, status: int, body: dict[str, Any]
) -> None:
    stub.answer = (status, body)
    provider = _delegated(calendar, tmp_path, stub.url + "/token")
    calendar.control.reset_counters()
    with pytest.raises(Misconfigured) as info:
        _list(calendar, provider, DWD_SUB)
    assert body["error"] in str(info.value) and stub.posts == ["/token"]
    assert not isinstance(info.value, CredentialsRejected)
    # The renewer's path (watch) is classified the same way.
    with pytest.raises(Misconfigured):
        GoogleChannels(GoogleCalendar(provider, api_endpoint=calendar.api_endpoint)).watch(
            DWD_SUB, "ch-x", "tok", "https://example.invalid/hook", 60)
    assert "events.list" not in calendar.control.counters().get("calls", {})


@pytest.mark.parametrize(("status", "body"), [(401, UNAUTHORIZED_CLIENT), (401, INVALID_CLIENT)])
def test_our_oauth_client_refused_is_ours(
    calendar: Any, firestore_db: Any, stub: Stub, status: int, body: dict[str, Any]
) -> None:
    stub.answer = (status, body)
    vault = CredentialVault(firestore_db, KEYS)
    sub = Subscription("s", "primary", OWNER, credentials_ref=vault.store_refresh_token("rt-x"))
    provider = GoogleCredentialsProvider(
        _settings(calendar, CALSYNC_OAUTH_TOKEN_URI=stub.url + "/token"), vault)
    with pytest.raises(Misconfigured, match=body["error"]):
        _list(calendar, provider, sub)


def test_iam_refusing_to_sign_the_delegation_jwt_is_ours(
    calendar: Any, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyless delegation: the function's identity lacks Token Creator (IAM answers 403)."""
    import google.auth
    from google.auth import credentials as auth_credentials
    from google.auth import iam

    stub.answer = (403, IAM_DENIED)
    monkeypatch.setattr(iam, "_IAM_SIGN_ENDPOINT",
                        stub.url + "/v1/projects/-/serviceAccounts/{}:signBlob")
    monkeypatch.setattr(google.auth, "default",
                        lambda scopes=None: (auth_credentials.AnonymousCredentials(), None))
    provider = GoogleCredentialsProvider(_settings(
        calendar, CALSYNC_DELEGATION_SA="dwd@calsync-test.iam.gserviceaccount.com"), vault=None)
    with pytest.raises(Misconfigured, match="Token Creator") as info:
        _list(calendar, provider, DWD_SUB)
    assert "PERMISSION_DENIED" in str(info.value)
    assert stub.posts and stub.posts[0].endswith(":signBlob")


def test_credential_sealed_under_a_missing_key_is_ours(calendar: Any, firestore_db: Any) -> None:
    ref = CredentialVault(firestore_db, {"v0": b"x" * 32}).store_refresh_token("rt-old")
    provider = GoogleCredentialsProvider(_settings(calendar), CredentialVault(firestore_db, KEYS))
    with pytest.raises(Misconfigured, match="'v0'") as info:
        _list(calendar, provider, Subscription("s", "primary", OWNER, credentials_ref=ref))
    assert "rt-old" not in str(info.value)


def test_credential_the_key_of_its_id_no_longer_opens_is_ours(
    calendar: Any, firestore_db: Any
) -> None:
    ref = CredentialVault(firestore_db, {"v1": b"y" * 32}).store_refresh_token("rt-y")
    provider = GoogleCredentialsProvider(_settings(calendar), CredentialVault(firestore_db, KEYS))
    with pytest.raises(Misconfigured, match="replaced"):
        _list(calendar, provider, Subscription("s", "primary", OWNER, credentials_ref=ref))


def test_missing_stored_credential_is_the_users(calendar: Any, firestore_db: Any) -> None:
    provider = GoogleCredentialsProvider(_settings(calendar), CredentialVault(firestore_db, KEYS))
    with pytest.raises(CredentialsRejected) as info:
        _list(calendar, provider, Subscription("s", "primary", OWNER,
                                               credentials_ref="oauth:absent"))
    assert info.value.reason == REAUTHORIZATION_REQUIRED


def test_unconfigured_delegation_and_oauth_are_ours(
    calendar: Any, firestore_db: Any, tmp_path: Path
) -> None:
    provider = GoogleCredentialsProvider(_settings(calendar), vault=None)
    with pytest.raises(Misconfigured, match="CALSYNC_DELEGATION_SA"):
        _list(calendar, provider, DWD_SUB)
    (tmp_path / "broken.json").write_text("{}")
    for path in (tmp_path / "absent.json", tmp_path / "broken.json"):
        broken = GoogleCredentialsProvider(
            _settings(calendar, CALSYNC_DELEGATION_KEY_FILE=str(path)), vault=None)
        with pytest.raises(Misconfigured, match="CALSYNC_DELEGATION_KEY_FILE"):
            _list(calendar, broken, DWD_SUB)
    with pytest.raises(Misconfigured, match="OAuth is not configured"):
        _list(calendar, provider, Subscription("s", "primary", OWNER, credentials_ref="oauth:1"))
    no_client = GoogleCredentialsProvider(_settings(calendar, CALSYNC_OAUTH_CLIENT_ID=""),
                                          CredentialVault(firestore_db, KEYS))
    with pytest.raises(Misconfigured, match="CALSYNC_OAUTH_CLIENT_ID"):
        _list(calendar, no_client, Subscription("s", "primary", OWNER, credentials_ref="oauth:1"))


@pytest.mark.parametrize(("status", "reason", "error", "why"), [
    (403, "forbidden", CredentialsRejected, CALENDAR_ACCESS_LOST),
    (404, "notFound", CalendarGone, CALENDAR_NOT_FOUND),
    (403, "accessNotConfigured", Misconfigured, None),
])
def test_calendar_refusals_after_a_fresh_token(
    calendar: Any, firestore_db: Any, status: int, reason: str, error: type[Exception],
    why: str | None
) -> None:
    calendar.control.register_refresh_token("rt-erin", OWNER)
    vault = CredentialVault(firestore_db, KEYS)
    sub = Subscription("s", "primary", OWNER, credentials_ref=vault.store_refresh_token("rt-erin"))
    provider = GoogleCredentialsProvider(_settings(calendar), vault)
    calendar.control.inject_failure("events.list", status, reason)
    with pytest.raises(error) as info:
        _list(calendar, provider, sub)
    assert calendar.control.counters()["tokens"].get("refresh_token", 0) >= 1  # fresh token
    if why is not None:
        assert getattr(info.value, "reason", None) == why and why in str(info.value)


def test_a_calendar_that_does_not_exist_is_calendar_not_found(calendar: Any) -> None:
    provider = GoogleCredentialsProvider(_settings(calendar), vault=None)
    calendar.control.add_user(OWNER)
    sub = Subscription("s", "nope@group.calendar.google.com", OWNER, credentials_ref="bearer")
    with pytest.raises(CalendarGone) as info:
        _list(calendar, provider, sub)
    assert info.value.reason == CALENDAR_NOT_FOUND


def test_a_webhook_address_google_refuses_is_our_misconfiguration(calendar: Any) -> None:
    """`push.webhookUrlNotHttps` names our deployment's webhook address, never the user's
    calendar: with the bounded give-up it must not put every subscription in `error`."""
    provider = GoogleCredentialsProvider(_settings(calendar), vault=None)
    calendar.control.add_user(OWNER)
    sub = Subscription("s", "primary", OWNER, credentials_ref="bearer")
    channels = GoogleChannels(GoogleCalendar(provider, api_endpoint=calendar.api_endpoint))
    with pytest.raises(Misconfigured):
        channels.watch(sub, "ch-1", "token", "http://hooks.example.com/webhook", 3600)
