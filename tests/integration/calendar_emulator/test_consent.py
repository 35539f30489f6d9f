"""The consent page ``GET /o/oauth2/v2/auth``: redirects to the app with a code or an error."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from .test_auth_code import REDIRECT, SCOPES, exchange


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def consent(emu: Any, **params: str) -> tuple[int, dict[str, str], dict[str, Any] | None]:
    """Status, the redirect's query parameters (302) or the error page (4xx)."""
    url = emu.auth_uri + "?" + urllib.parse.urlencode(params)
    try:
        with _OPENER.open(url, timeout=10) as response:
            return response.status, {}, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        if err.code == 302:
            location = err.headers["Location"]
            assert location.startswith(params["redirect_uri"])
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
            return 302, {key: values[-1] for key, values in query.items()}, None
        return err.code, {}, json.loads(err.read())


def ask(**overrides: str) -> dict[str, str]:
    params = {
        "client_id": "app-client",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": " ".join(SCOPES),
        "state": "xyz",
        "login_hint": "ann@example.com",
        "access_type": "offline",
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value}


def test_consent_redirects_with_a_code_that_exchanges(emu: Any) -> None:
    status, answer, _ = consent(emu, **ask())
    assert status == 302 and answer["state"] == "xyz" and answer["scope"] == " ".join(SCOPES)
    status, body = exchange(emu, answer["code"])
    assert status == 200 and body["access_token"] == "ann@example.com" and body["refresh_token"]


def test_refresh_token_only_offline_and_again_only_with_prompt_consent(emu: Any) -> None:
    online = consent(emu, **ask(access_type="online"))[1]["code"]
    assert "refresh_token" not in exchange(emu, online)[1]
    first = consent(emu, **ask())[1]["code"]
    assert "refresh_token" in exchange(emu, first)[1]
    again = consent(emu, **ask())[1]["code"]
    assert "refresh_token" not in exchange(emu, again)[1]
    forced = consent(emu, **ask(prompt="consent"))[1]["code"]
    assert "refresh_token" in exchange(emu, forced)[1]


def test_errors_go_back_through_the_redirect(emu: Any) -> None:
    status, answer, _ = consent(emu, **ask(response_type="token"))
    assert status == 302 and answer == {"error": "unsupported_response_type", "state": "xyz"}
    status, answer, _ = consent(emu, **ask(scope=""))
    assert status == 302 and answer["error"] == "invalid_scope"


@pytest.mark.parametrize(
    "overrides,code",
    [
        ({"client_id": ""}, 400),
        ({"redirect_uri": ""}, 400),
        ({"redirect_uri": "not-a-url"}, 400),
        ({"redirect_uri": "https://app.example.com/cb\r\nSet-Cookie: x=1"}, 400),
        ({"login_hint": ""}, 400),
    ],
)
def test_errors_without_a_safe_redirect_are_pages(
    emu: Any, overrides: dict[str, str], code: int
) -> None:
    params = ask(**overrides)
    params.setdefault("redirect_uri", "")
    status, _, body = consent(emu, **params)
    assert status == code and body is not None and body["error"] == "invalid_request"


def test_unknown_client_once_clients_are_registered(emu: Any) -> None:
    emu.control.register_oauth_client("other-client", "s")
    status, _, body = consent(emu, **ask())
    assert status == 401 and body is not None and body["error"] == "invalid_client"
