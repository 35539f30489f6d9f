"""The server-side code exchange (functions/oauth.py) against the Calendar emulator's /token."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2.credentials import Credentials
from oauthlib.oauth2 import InsecureTransportError
from requests_oauthlib import OAuth2Session

from functions.adapters.google.oauth import (
    CALENDAR_SCOPE,
    EMAIL_SCOPE,
    GOOGLE_AUTH_URI,
    SCOPES,
    CodeExchange,
    OAuthExchangeRejected,
    OAuthUnavailable,
)
from functions.errors import Misconfigured
from infra.calendar_emulator.testing import calendar_service

CLIENT_ID = "app-client.apps.googleusercontent.com"
CLIENT_SECRET = "app-secret"
REDIRECT = "https://app.example.com/oauth/callback"
USER = "owner@example.com"


@pytest.fixture
def exchange(calendar: Any) -> CodeExchange:
    calendar.control.register_oauth_client(CLIENT_ID, CLIENT_SECRET)
    return CodeExchange(CLIENT_ID, CLIENT_SECRET, token_uri=calendar.token_uri)


def issue(calendar: Any, **options: Any) -> str:
    scopes = options.pop("scopes", SCOPES)
    return str(calendar.control.issue_auth_code(USER, REDIRECT, scopes, **options))


def rejected(exchange: CodeExchange, code: str, **kwargs: Any) -> OAuthExchangeRejected:
    with pytest.raises(OAuthExchangeRejected) as caught:
        exchange.exchange(code, kwargs.pop("redirect_uri", REDIRECT), **kwargs)
    return caught.value


def test_exchange_yields_owner_and_a_refresh_token_that_works(
    calendar: Any, exchange: CodeExchange
) -> None:
    grant = exchange.exchange(issue(calendar), REDIRECT)
    assert grant.owner_email == USER and grant.scopes == SCOPES
    assert grant.refresh_token and grant.refresh_token not in repr(grant)
    credentials = Credentials(
        token=None,
        refresh_token=grant.refresh_token,
        token_uri=calendar.token_uri,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    credentials.refresh(AuthRequest())
    assert credentials.token == USER
    service = calendar_service(calendar.base_url, "ignored", credentials=credentials)
    assert service.calendars().get(calendarId="primary").execute()["id"] == USER
    tokens = calendar.control.counters()["tokens"]
    assert tokens["authorization_code"] == 1 and tokens["refresh_token"] == 1
    # Neither oauthlib switch was flipped for the process.
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    assert "OAUTHLIB_RELAX_TOKEN_SCOPE" not in os.environ


def test_plain_http_stays_refused_for_everyone_else(
    calendar: Any, exchange: CodeExchange
) -> None:
    exchange.exchange(issue(calendar), REDIRECT)
    session = OAuth2Session(CLIENT_ID, redirect_uri=REDIRECT)
    with pytest.raises(InsecureTransportError):
        session.fetch_token(calendar.token_uri, code="x", client_secret=CLIENT_SECRET)
    assert calendar.control.counters()["calls"]["token"] == 1  # only our exchange got through


def test_reused_code_is_rejected_with_googles_reason(
    calendar: Any, exchange: CodeExchange
) -> None:
    code = issue(calendar)
    exchange.exchange(code, REDIRECT)
    error = rejected(exchange, code)
    assert error.reason == "invalid_grant" and str(error).startswith("invalid_grant: ")
    assert rejected(exchange, "4/never-issued").reason == "invalid_grant"


def test_wrong_redirect_uri_is_rejected(calendar: Any, exchange: CodeExchange) -> None:
    error = rejected(exchange, issue(calendar), redirect_uri="https://app.example.com/other")
    assert error.reason == "invalid_grant"


def test_calendar_scope_not_granted_is_rejected(calendar: Any, exchange: CodeExchange) -> None:
    code = issue(calendar, granted_scopes=["openid", EMAIL_SCOPE])
    error = rejected(exchange, code)
    assert error.reason == "scope_not_granted" and CALENDAR_SCOPE in str(error)


def test_other_scope_differences_are_accepted_for_this_call(
    calendar: Any, exchange: CodeExchange
) -> None:
    # Fewer scopes than asked, but the calendar scope: oauthlib's Warning is relaxed.
    grant = exchange.exchange(issue(calendar, granted_scopes=["openid", CALENDAR_SCOPE]), REDIRECT)
    assert grant.scopes == ("openid", CALENDAR_SCOPE) and grant.owner_email == USER
    # More than asked (previously granted scopes): accepted too.
    profile = "https://www.googleapis.com/auth/userinfo.profile"
    grant = exchange.exchange(issue(calendar, scopes=[*SCOPES, profile]), REDIRECT)
    assert grant.scopes == (*SCOPES, profile)


def test_no_refresh_token_is_rejected(calendar: Any, exchange: CodeExchange) -> None:
    assert rejected(exchange, issue(calendar, refresh_token=False)).reason == "no_refresh_token"


def test_unverified_email_is_rejected(calendar: Any, exchange: CodeExchange) -> None:
    error = rejected(exchange, issue(calendar, email_verified=False))
    assert error.reason == "email_not_verified"


def test_id_token_for_another_client_is_rejected(calendar: Any, exchange: CodeExchange) -> None:
    error = rejected(exchange, issue(calendar, audience="other-client"))
    assert error.reason == "wrong_audience"


def test_pkce_verifier_is_sent(calendar: Any, exchange: CodeExchange) -> None:
    verifier = "k" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    options = {"code_challenge": challenge.decode().rstrip("=")}
    assert rejected(exchange, issue(calendar, **options)).reason == "invalid_grant"
    grant = exchange.exchange(issue(calendar, **options), REDIRECT, code_verifier=verifier)
    assert grant.owner_email == USER


def test_refused_client_credentials_are_our_misconfiguration(calendar: Any) -> None:
    calendar.control.register_oauth_client(CLIENT_ID, "the-real-secret")
    wrong = CodeExchange(CLIENT_ID, CLIENT_SECRET, token_uri=calendar.token_uri)
    with pytest.raises(Misconfigured, match="invalid_client"):
        wrong.exchange(issue(calendar), REDIRECT)


def test_token_endpoint_failure_is_unavailable(calendar: Any, exchange: CodeExchange) -> None:
    calendar.control.inject_failure("token", 503, "backendError")
    with pytest.raises(OAuthUnavailable):
        exchange.exchange(issue(calendar), REDIRECT)


def test_unreachable_token_endpoint_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exchange = CodeExchange(
        CLIENT_ID, CLIENT_SECRET, token_uri=f"http://127.0.0.1:{port}/token", timeout=5
    )
    with pytest.raises(OAuthUnavailable):
        exchange.exchange("4/code", REDIRECT)


@pytest.mark.parametrize(
    "token_uri",
    [
        "http://oauth2.googleapis.com/token",
        "http://localhost:8080/token",  # a name, not a loopback address literal
        "http://10.0.0.1/token",
        "ftp://127.0.0.1/token",
        "not a url",
    ],
)
def test_non_loopback_plain_http_is_refused_before_any_request(token_uri: str) -> None:
    with pytest.raises(Misconfigured):
        CodeExchange(CLIENT_ID, CLIENT_SECRET, token_uri=token_uri)


def test_missing_code_or_client_id(calendar: Any, exchange: CodeExchange) -> None:
    assert rejected(exchange, "").reason == "invalid_request"
    with pytest.raises(Misconfigured):
        CodeExchange("", CLIENT_SECRET, token_uri=calendar.token_uri)


def test_consent_config(calendar: Any) -> None:
    google = CodeExchange(CLIENT_ID, CLIENT_SECRET).config().to_json()
    assert google == {
        "client_id": CLIENT_ID,
        # The calendar list's scope: an account lists and watches its calendars (issue 20).
        "scopes": ["openid", EMAIL_SCOPE, CALENDAR_SCOPE,
                   "https://www.googleapis.com/auth/calendar.calendarlist.readonly"],
        "auth_uri": GOOGLE_AUTH_URI,
        "access_type": "offline",
        "prompt": "consent",
    }
    local = CodeExchange(
        CLIENT_ID, CLIENT_SECRET, token_uri=calendar.token_uri, auth_uri=calendar.auth_uri
    )
    assert local.config().auth_uri == calendar.auth_uri


def test_connect_flow_through_the_emulators_consent_page(calendar: Any) -> None:
    """What an app does: consent URL from the config, browser redirect, code to calsync."""
    exchange = CodeExchange(
        CLIENT_ID, CLIENT_SECRET, token_uri=calendar.token_uri, auth_uri=calendar.auth_uri
    )
    config = exchange.config().to_json()
    verifier = "pkce-" + "v" * 60
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    query = {
        "client_id": config["client_id"],
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": " ".join(config["scopes"]),
        "access_type": config["access_type"],
        "prompt": config["prompt"],
        "state": "s-1",
        "login_hint": USER,
        "code_challenge": challenge.rstrip("="),
        "code_challenge_method": "S256",
    }
    with requests.Session() as browser:
        browser.trust_env = False
        answer = browser.get(config["auth_uri"], params=query, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    params = dict(parse_qsl(location.query))
    assert params["state"] == "s-1"
    grant = exchange.exchange(params["code"], REDIRECT, code_verifier=verifier)
    assert grant.owner_email == USER and grant.scopes == SCOPES and grant.refresh_token


def test_a_redirecting_token_endpoint_is_not_followed(calendar: Any) -> None:
    hits: list[str] = []

    class Redirector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", calendar.token_uri)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        port = server.server_address[1]
        exchange = CodeExchange(CLIENT_ID, CLIENT_SECRET, token_uri=f"http://127.0.0.1:{port}/t")
        with pytest.raises(OAuthUnavailable):
            exchange.exchange(issue(calendar), REDIRECT)
    finally:
        server.shutdown()
        server.server_close()
    assert hits == ["/t"]
    assert "token" not in calendar.control.counters().get("calls", {})
