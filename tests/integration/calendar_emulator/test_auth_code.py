"""The authorization-code grant on /token (DESIGN.md, "Interfaces that other tools rely on")."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2 import credentials as user_credentials

from infra.calendar_emulator.control import ControlError
from infra.calendar_emulator.testing import calendar_service, running_emulator

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
REDIRECT = "https://app.example.com/oauth/callback"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events.readonly"
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
SCOPES = ["openid", EMAIL_SCOPE, CALENDAR_SCOPE]


def token_request(
    emu: Any, form: dict[str, str], basic: tuple[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
    request = urllib.request.Request(
        emu.token_uri, data=urllib.parse.urlencode(form).encode(), method="POST", headers=headers
    )
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def exchange(
    emu: Any, code: str, redirect_uri: str = REDIRECT, **extra: str
) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": "app-client",
        "client_secret": "app-secret",
        **extra,
    }
    return token_request(emu, form)


def jwt_payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def test_code_exchange_answers_tokens_and_identity(emu: Any) -> None:
    code = emu.control.issue_auth_code("ann@example.com", REDIRECT, SCOPES)
    status, body = exchange(emu, code)
    assert status == 200, body
    assert body["access_token"] == "ann@example.com"
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["scope"].split(" ") == SCOPES
    assert body["refresh_token"] and body["refresh_token"] != body["access_token"]
    claims = jwt_payload(body["id_token"])
    assert claims["iss"] == emu.base_url and claims["sub"]
    assert claims["aud"] == "app-client" and claims["email"] == "ann@example.com"
    assert claims["email_verified"] is True and claims["exp"] > claims["iat"]
    assert emu.control.counters()["tokens"]["authorization_code"] == 1


def test_short_scope_names_come_back_expanded(emu: Any) -> None:
    code = emu.control.issue_auth_code(
        "ann@example.com", REDIRECT, ["openid", "email", "calendar.events.readonly"]
    )
    status, body = exchange(emu, code)
    assert status == 200 and body["scope"].split(" ") == SCOPES


def test_code_works_once(emu: Any) -> None:
    code = emu.control.issue_auth_code("ann@example.com", REDIRECT, SCOPES)
    assert exchange(emu, code)[0] == 200
    status, body = exchange(emu, code)
    assert status == 400 and body["error"] == "invalid_grant" and body["error_description"]
    assert exchange(emu, "4/never-issued")[1]["error"] == "invalid_grant"


def test_code_works_only_with_its_redirect_uri(emu: Any) -> None:
    code = emu.control.issue_auth_code("ann@example.com", REDIRECT, SCOPES)
    status, body = exchange(emu, code, redirect_uri="https://evil.example.com/cb")
    assert status == 400 and body["error"] == "invalid_grant"
    # The failed attempt spent the code.
    assert exchange(emu, code)[1]["error"] == "invalid_grant"


def test_code_expires(emu: Any) -> None:
    code = emu.control.issue_auth_code("ann@example.com", REDIRECT, SCOPES)
    emu.control.advance_clock(601)
    status, body = exchange(emu, code)
    assert status == 400 and body["error"] == "invalid_grant"


def test_client_credentials_as_http_basic(emu: Any) -> None:
    emu.control.register_oauth_client("app-client", "app-secret")
    code = emu.control.issue_auth_code("ann@example.com", REDIRECT, SCOPES)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    status, body = token_request(emu, form, basic=("app-client", "app-secret"))
    assert status == 200, body
    assert jwt_payload(body["id_token"])["aud"] == "app-client"


def test_unknown_client_or_wrong_secret_is_invalid_client(emu: Any) -> None:
    code = emu.control.issue_auth_code("ann@example.com", REDIRECT, SCOPES)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    status, body = token_request(emu, form)  # no client at all
    assert status == 401 and body["error"] == "invalid_client"
    emu.control.register_oauth_client("app-client", "app-secret")
    status, body = token_request(emu, form, basic=("app-client", "wrong"))
    assert status == 401 and body["error"] == "invalid_client"
    status, body = exchange(emu, code)  # the client check comes first: the code is unspent
    assert status == 200, body


def test_refresh_token_works_with_the_refresh_grant(emu: Any) -> None:
    code = emu.control.issue_auth_code("ann@example.com", REDIRECT, SCOPES)
    refresh_token = exchange(emu, code)[1]["refresh_token"]
    credentials = user_credentials.Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=emu.token_uri,
        client_id="app-client",
        client_secret="app-secret",
    )
    credentials.refresh(AuthRequest())
    assert credentials.token == "ann@example.com"
    service = calendar_service(emu.base_url, "ignored", credentials=credentials)
    assert service.calendars().get(calendarId="primary").execute()["id"] == "ann@example.com"


def test_access_token_is_accepted_with_auth_enforced() -> None:
    with running_emulator(enforce_auth=True) as emu:
        code = emu.control.issue_auth_code("bea@example.com", REDIRECT, SCOPES)
        status, body = exchange(emu, code)
        assert status == 200, body
        service = calendar_service(emu.base_url, body["access_token"])
        events = service.events().list(calendarId="primary").execute()
        assert events["items"] == []
        assert (
            calendar_service(emu.base_url, "bea@example.com")
            .calendars()
            .get(calendarId="primary")
            .execute()["id"]
            == "bea@example.com"
        )


def test_scope_narrowing(emu: Any) -> None:
    code = emu.control.issue_auth_code(
        "ann@example.com", REDIRECT, SCOPES, granted_scopes=["openid", "email"]
    )
    status, body = exchange(emu, code)
    assert status == 200 and body["scope"].split(" ") == ["openid", EMAIL_SCOPE]
    with pytest.raises(ControlError) as caught:
        emu.control.issue_auth_code(
            "ann@example.com", REDIRECT, ["openid"], granted_scopes=["openid", "email"]
        )
    assert caught.value.status == 400


def test_answers_google_sometimes_gives(emu: Any) -> None:
    code = emu.control.issue_auth_code(
        "ann@example.com",
        REDIRECT,
        SCOPES,
        email_verified=False,
        audience="someone-else",
        refresh_token=False,
    )
    status, body = exchange(emu, code)
    assert status == 200 and "refresh_token" not in body
    claims = jwt_payload(body["id_token"])
    assert claims["email_verified"] is False and claims["aud"] == "someone-else"


def test_pkce_s256(emu: Any) -> None:
    verifier = "v" * 43 + "-._~abc"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    issue = lambda: emu.control.issue_auth_code(  # noqa: E731 - three identical codes
        "ann@example.com", REDIRECT, SCOPES, code_challenge=challenge.decode().rstrip("=")
    )
    status, body = exchange(emu, issue())
    assert status == 400 and body["error"] == "invalid_grant"  # verifier missing
    status, body = exchange(emu, issue(), code_verifier="w" * 43)
    assert status == 400 and body["error"] == "invalid_grant"
    status, body = exchange(emu, issue(), code_verifier=verifier)
    assert status == 200, body


def test_revoked_user_cannot_redeem(emu: Any) -> None:
    emu.control.set_invalid_grant("ann@example.com")
    code = emu.control.issue_auth_code("ann@example.com", REDIRECT, SCOPES)
    status, body = exchange(emu, code)
    assert status == 400 and body["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "body",
    [
        {"redirect_uri": REDIRECT, "scopes": SCOPES},
        {"user": "a@example.com", "scopes": SCOPES},
        {"user": "a@example.com", "redirect_uri": REDIRECT},
        {"user": "a@example.com", "redirect_uri": REDIRECT, "scopes": []},
        {"user": "a@example.com", "redirect_uri": REDIRECT, "scopes": "openid"},
        {"user": "a@example.com", "redirect_uri": REDIRECT, "scopes": [5]},
        {"user": "a@example.com", "redirect_uri": REDIRECT, "scopes": SCOPES, "granted_scopes": []},
        {"user": "", "redirect_uri": REDIRECT, "scopes": SCOPES},
        {
            "user": "a@example.com",
            "redirect_uri": REDIRECT,
            "scopes": SCOPES,
            "code_challenge_method": "S512",
        },
        {
            "user": "a@example.com",
            "redirect_uri": REDIRECT,
            "scopes": SCOPES,
            "email_verified": "yes",
        },
    ],
)
def test_issue_code_rejects_malformed_input(emu: Any, body: dict[str, Any]) -> None:
    with pytest.raises(ControlError) as caught:
        emu.control._call("POST", "auth/codes", body)
    assert caught.value.status == 400
