"""Identity, tokens, errors, limits and the client transport (calendar-api.md 0, 5, identity)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import google.auth.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.errors import HttpError

from infra.calendar_emulator.testing import calendar_service, running_emulator

from .conftest import USER, timed

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def raw(
    emu: Any, method: str, path: str, body: bytes | None = None, token: str | None = USER
) -> tuple[int, dict[str, Any] | None]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(emu.base_url + path, data=body, method=method, headers=headers)
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def assert_google_error(status: int, body: Any, code: int) -> None:
    assert status == code
    error = body["error"]
    assert error["code"] == code and isinstance(error["message"], str)
    assert error["errors"] and {"domain", "reason", "message"} <= set(error["errors"][0])


def test_bearer_token_is_user_and_primary_exists_on_first_use(emu: Any) -> None:
    bob = calendar_service(emu.base_url, "bob@example.com")
    calendar = bob.calendars().get(calendarId="primary").execute()
    assert calendar["id"] == "bob@example.com"
    entries = bob.calendarList().list().execute()["items"]
    assert [(entry["id"], entry.get("primary")) for entry in entries] == [("bob@example.com", True)]


def test_percent_encoded_calendar_ids_and_calendar_lifecycle(emu: Any, service: Any) -> None:
    created = (
        service.calendars().insert(body={"summary": "Team", "timeZone": "Europe/Paris"}).execute()
    )
    assert "@" in created["id"]
    event = (
        service.events()
        .insert(calendarId=created["id"], body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00"))
        .execute()
    )
    status, body = raw(
        emu, "GET", f"/calendar/v3/calendars/{created['id'].replace('@', '%40')}/events"
    )
    assert status == 200 and [item["id"] for item in body["items"]] == [event["id"]]
    assert service.events().list(calendarId=USER).execute()["items"] == []
    assert len(service.calendarList().list().execute()["items"]) == 2
    service.calendars().delete(calendarId=created["id"]).execute()
    with pytest.raises(HttpError) as caught:
        service.calendars().get(calendarId=created["id"]).execute()
    assert caught.value.status_code == 404
    with pytest.raises(HttpError) as caught:
        service.calendars().delete(calendarId="primary").execute()
    assert caught.value.status_code == 400


def test_http_error_carries_reason_and_details(emu: Any, service: Any) -> None:
    with pytest.raises(HttpError) as caught:
        service.events().get(calendarId="primary", eventId="missing0").execute()
    assert caught.value.status_code == 404
    assert caught.value.reason == "Not Found"
    assert caught.value.error_details[0]["reason"] == "notFound"


@pytest.mark.parametrize(
    "method,path,body,code",
    [
        ("POST", "/calendar/v3/calendars/primary/events", b"{not json", 400),
        ("POST", "/calendar/v3/calendars/primary/events", b"[1, 2]", 400),
        ("GET", "/calendar/v3/calendars/primary/events?maxResults=abc", None, 400),
        ("GET", "/calendar/v3/calendars/primary/events?maxResults=0", None, 400),
        ("GET", "/calendar/v3/calendars/primary/events?singleEvents=maybe", None, 400),
        ("GET", "/calendar/v3/calendars/primary/events?pageToken=nope", None, 400),
        ("GET", "/calendar/v3/calendars/primary/events?privateExtendedProperty=novalue", None, 400),
        ("GET", "/calendar/v3/calendars/nobody/events", None, 404),
        ("GET", "/calendar/v3/calendars/primary/events/nothere1", None, 404),
        ("PATCH", "/calendar/v3/calendars/primary/events/nothere1", b"{}", 404),
        ("PUT", "/calendar/v3/calendars/primary/events/nothere1", b"{}", 404),
        ("DELETE", "/calendar/v3/calendars/primary/events/nothere1", None, 404),
        ("GET", "/calendar/v3/calendars/primary/events/nothere1/instances", None, 404),
        ("POST", "/calendar/v3/channels/stop", b'{"id": "nope", "resourceId": "x"}', 404),
        ("POST", "/calendar/v3/channels/stop", b"{", 400),
        ("POST", "/calendar/v3/calendars/primary/events/watch", b'{"id": 5}', 400),
        (
            "POST",
            "/calendar/v3/calendars/primary/events",
            b'{"start": {"dateTime": 5}, "end": {}}',
            400,
        ),
        ("POST", "/calendar/v3/calendars/primary/events", b'{"start": "x", "end": "y"}', 400),
        (
            "POST",
            "/calendar/v3/calendars/primary/events",
            b'{"start": {"date": "2025-13-45"}, "end": {"date": "2025-01-02"}}',
            400,
        ),
        (
            "POST",
            "/calendar/v3/calendars/primary/events",
            b'{"start": {"dateTime": "2025-01-01T10:00:00Z"},'
            b' "end": {"dateTime": "2025-01-01T11:00:00Z"},'
            b' "recurrence": "RRULE:FREQ=DAILY"}',
            400,
        ),
        ("GET", "/calendar/v3/nowhere", None, 404),
        ("POST", "/control/failures", b'{"method": 5}', 400),
        ("POST", "/control/nothing", None, 404),
    ],
)
def test_bad_input_gets_google_error_shape(
    emu: Any, method: str, path: str, body: bytes | None, code: int
) -> None:
    status, answer = raw(emu, method, path, body)
    assert_google_error(status, answer, code)


def test_missing_token_is_401(emu: Any) -> None:
    status, body = raw(emu, "GET", "/calendar/v3/calendars/primary/events", token=None)
    assert_google_error(status, body, 401)
    assert body["error"]["errors"][0]["reason"] == "authError"


def test_injected_failures_then_recovery_with_client_retries(emu: Any, service: Any) -> None:
    emu.control.inject_failure("events.list", 503, "backendError", count=2)
    assert service.events().list(calendarId="primary").execute(num_retries=3)["items"] == []
    assert emu.control.counters()["calls"]["events.list"] == 3
    emu.control.inject_failure("events.insert", 403, "quotaExceeded", message="Quota exceeded")
    with pytest.raises(HttpError) as caught:
        service.events().insert(
            calendarId="primary", body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00")
        ).execute()
    assert (
        caught.value.status_code == 403
        and caught.value.error_details[0]["reason"] == "quotaExceeded"
    )
    assert caught.value.error_details[0]["domain"] == "usageLimits"


@pytest.mark.parametrize(
    "status,reason", [(403, "userRateLimitExceeded"), (429, "rateLimitExceeded")]
)
def test_per_user_rate_limit(emu: Any, service: Any, status: int, reason: str) -> None:
    emu.control.set_rate_limit(2, window_seconds=60, status=status)
    service.events().list(calendarId="primary").execute()
    service.events().list(calendarId="primary").execute()
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary").execute()
    assert caught.value.status_code == status and caught.value.error_details[0]["reason"] == reason
    calendar_service(emu.base_url, "other@example.com").events().list(
        calendarId="primary"
    ).execute()
    emu.control.advance_clock(61)
    service.events().list(calendarId="primary").execute()
    emu.control.set_rate_limit(None)


def test_counters_and_clock(emu: Any, service: Any) -> None:
    emu.control.bulk_insert_events(USER, [timed("2025-01-01T10:00:00", "2025-01-01T11:00:00")] * 3)
    service.events().list(calendarId="primary", maxResults=2).execute()
    counters = emu.control.counters()
    assert counters["calls"]["events.list"] == 1 and counters["items"]["events.list"] == 2
    before = emu.control.now()
    emu.control.advance_clock(86400)
    event = (
        service.events()
        .insert(calendarId="primary", body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00"))
        .execute()
    )
    assert event["updated"] > before and event["updated"][:10] == emu.control.now()[:10]


def _refresh_credentials(emu: Any, user: str) -> user_credentials.Credentials:
    return user_credentials.Credentials(
        token=None,
        refresh_token=f"rt:{user}",
        token_uri=emu.token_uri,
        client_id="client",
        client_secret="secret",
    )


def test_refresh_token_grant_and_invalid_grant(emu: Any) -> None:
    creds = _refresh_credentials(emu, "carol@example.com")
    service = calendar_service(emu.base_url, "ignored", credentials=creds)
    calendar = service.calendars().get(calendarId="primary").execute()
    assert calendar["id"] == "carol@example.com" and creds.token == "carol@example.com"
    emu.control.register_refresh_token("opaque-refresh", "dave@example.com")
    dave = user_credentials.Credentials(
        token=None,
        refresh_token="opaque-refresh",
        token_uri=emu.token_uri,
        client_id="c",
        client_secret="s",
    )
    calendar_service(emu.base_url, "x", credentials=dave).calendarList().list().execute()
    assert dave.token == "dave@example.com"
    emu.control.set_invalid_grant("carol@example.com")
    with pytest.raises(google.auth.exceptions.RefreshError) as caught:
        _refresh_credentials(emu, "carol@example.com").refresh(
            __import__("google.auth.transport.requests", fromlist=["Request"]).Request()
        )
    assert "invalid_grant" in str(caught.value)
    # The revoked user's current token is refused too: the client refreshes, which fails.
    with pytest.raises(google.auth.exceptions.RefreshError):
        service.calendars().get(calendarId="primary").execute()


def test_service_account_jwt_bearer_with_subject(emu: Any) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "client_email": "robot@project.iam.gserviceaccount.com",
        "private_key": pem,
        "private_key_id": "k1",
        "token_uri": emu.token_uri,
        "project_id": "p",
    }
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/calendar.events.readonly"]
    ).with_subject("erin@example.com")
    service = calendar_service(emu.base_url, "x", credentials=creds)
    assert service.calendars().get(calendarId="primary").execute()["id"] == "erin@example.com"
    assert emu.control.counters()["tokens"]["jwt-bearer"] == 1


def test_enforced_auth_401_then_refresh_and_token_expiry() -> None:
    with running_emulator(enforce_auth=True) as emu:
        status, body = raw(
            emu, "GET", "/calendar/v3/calendars/primary/events", token="frank@example.com"
        )
        assert_google_error(status, body, 401)
        # Without a refresh token the client cannot recover from the 401.
        with pytest.raises(google.auth.exceptions.RefreshError):
            calendar_service(emu.base_url, "frank@example.com").events().list(
                calendarId="primary"
            ).execute()
        creds = user_credentials.Credentials(
            token="frank@example.com",
            refresh_token="rt:frank@example.com",
            token_uri=emu.token_uri,
            client_id="c",
            client_secret="s",
        )
        service = calendar_service(emu.base_url, "x", credentials=creds)
        service.events().list(calendarId="primary").execute()  # 401, refresh, retry
        assert emu.control.counters()["tokens"]["refresh_token"] == 1
        emu.control.advance_clock(3700)  # past expires_in
        service.events().list(calendarId="primary").execute()
        assert emu.control.counters()["tokens"]["refresh_token"] == 2
        emu.control.add_user("grace@example.com")
        calendar_service(emu.base_url, "grace@example.com").events().list(
            calendarId="primary"
        ).execute()
