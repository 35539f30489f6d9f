"""`OAuthExchanger`: how the code exchange's outcomes (`adapters.google.oauth.CodeExchange`,
h-oauth's module, imported when first used) become the API's answers. A stand-in
module with the same names is installed here; the real exchange runs against the
Calendar emulator in tests/integration/oauth and tests/e2e/test_api.py."""

from __future__ import annotations

import base64
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from functions.api.wiring import OAuthExchanger
from functions.config import API, Settings
from functions.errors import CodeRejected, ExchangeUnavailable, OAuthNotConfigured

KEY = base64.b64encode(b"k" * 32).decode()
BASE = {"GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "r", "CALSYNC_TASKS_QUEUE": "q",
        "CALSYNC_WORKER_URL": "http://127.0.0.1:9/"}
CONFIGURED = {"CALSYNC_OAUTH_CLIENT_ID": "cid", "CALSYNC_OAUTH_CLIENT_SECRET": "shh",
              "CALSYNC_CREDENTIAL_KEYS": "c1:" + KEY}


class Rejected(Exception):
    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason


class Unavailable(Exception):
    pass


@dataclass(frozen=True)
class Grant:
    owner_email: str
    refresh_token: str
    scopes: tuple[str, ...]


class StandIn:
    made: list[tuple[str, str, str, str]] = []

    def __init__(self, client_id: str, client_secret: str, token_uri: str = "",
                 auth_uri: str = "") -> None:
        self.made.append((client_id, client_secret, token_uri, auth_uri))
        self.auth_uri = auth_uri or "https://accounts.google.com/o/oauth2/v2/auth"

    def exchange(self, code: str, redirect_uri: str, verifier: str | None = None) -> Grant:
        if code == "reused":
            raise Rejected("invalid_grant", "Bad Request")
        if code == "down":
            raise Unavailable("token endpoint unreachable")
        return Grant("u@example.com", "rt", ("openid", "cal"))

    def config(self) -> Any:
        return types.SimpleNamespace(to_json=lambda: {"client_id": "cid",
                                                      "auth_uri": self.auth_uri})


@pytest.fixture(autouse=True)
def oauth_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    module = types.ModuleType("functions.adapters.google.oauth")
    module.OAuthExchangeRejected = Rejected  # type: ignore[attr-defined]
    module.OAuthUnavailable = Unavailable  # type: ignore[attr-defined]
    module.CodeExchange = StandIn  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "functions.adapters.google.oauth", module)
    # `from functions.adapters.google import oauth` reads the package attribute
    # first: once the real module was imported by an earlier test, it must be
    # replaced there too.
    import functions.adapters.google

    monkeypatch.setattr(functions.adapters.google, "oauth", module, raising=False)
    StandIn.made.clear()
    yield module


def exchanger(**env: str) -> OAuthExchanger:
    return OAuthExchanger(Settings.from_env({**BASE, **env}, function=API))


def test_outcomes_of_the_exchange() -> None:
    oauth = exchanger(**CONFIGURED)
    grant = oauth.exchange("ok", "http://h/cb", None)
    assert (grant.owner_email, grant.refresh_token, grant.scopes) == (
        "u@example.com", "rt", ("openid", "cal"))
    assert "rt" not in repr(grant)
    with pytest.raises(CodeRejected) as refused:
        oauth.exchange("reused", "http://h/cb", None)
    assert refused.value.reason == "invalid_grant"
    with pytest.raises(ExchangeUnavailable):
        oauth.exchange("down", "http://h/cb", None)
    assert StandIn.made == [("cid", "shh", "", "")]  # built once, Google's endpoints


def test_unconfigured_oauth_is_a_failed_precondition() -> None:
    with pytest.raises(OAuthNotConfigured):
        exchanger().exchange("ok", "http://h/cb", None)
    with pytest.raises(OAuthNotConfigured):
        exchanger(CALSYNC_OAUTH_CLIENT_ID="cid").consent_config()
    assert StandIn.made == []


def test_endpoints_come_from_the_settings() -> None:
    local = exchanger(**CONFIGURED, CALSYNC_OAUTH_TOKEN_URI="http://127.0.0.1:5/token",
                      CALSYNC_OAUTH_AUTH_URI="http://127.0.0.1:5/o/oauth2/v2/auth")
    assert local.consent_config()["auth_uri"] == "http://127.0.0.1:5/o/oauth2/v2/auth"
    assert StandIn.made == [("cid", "shh", "http://127.0.0.1:5/token",
                             "http://127.0.0.1:5/o/oauth2/v2/auth")]
    google = exchanger(**CONFIGURED)
    assert google.consent_config()["auth_uri"].startswith("https://accounts.google.com/")
