"""`OAuthExchanger`: how the code exchange's outcomes (functions/oauth.py, imported
when first used) become the API's answers. A stand-in `functions.oauth` module
is installed for the test; the real exchange has its own emulator tests."""

from __future__ import annotations

import base64
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from functions.api_ports import CodeRejected, ExchangeUnavailable, OAuthNotConfigured
from functions.api_wiring import CONSENT_SCOPES, OAuthExchanger
from functions.config import WORKER, Settings

KEY = base64.b64encode(b"k" * 32).decode()
BASE = {"GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "r", "CALSYNC_TASKS_QUEUE": "q",
        "CALSYNC_WORKER_URL": "http://127.0.0.1:9/"}


class Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"Google says {reason}")
        self.reason = reason


@dataclass
class Grant:
    owner_email: str
    refresh_token: str
    scopes: list[str]


@pytest.fixture
def oauth_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    module = types.ModuleType("functions.oauth")
    module.OAuthExchangeRejected = Rejected  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "functions.oauth", module)
    yield module


def exchanger(**env: str) -> OAuthExchanger:
    return OAuthExchanger(Settings.from_env({**BASE, **env}, function=WORKER))


CONFIGURED = {"CALSYNC_OAUTH_CLIENT_ID": "cid", "CALSYNC_CREDENTIAL_KEYS": "c1:" + KEY}


def test_outcomes_of_the_exchange(oauth_module: Any) -> None:
    def exchange(code: str, redirect_uri: str, verifier: str | None) -> Grant:
        if code == "reused":
            raise Rejected("invalid_grant")
        if code == "down":
            raise ConnectionError("refused")
        return Grant("u@example.com", "rt", ["openid", "cal"])

    oauth_module.exchange = exchange
    grant = exchanger(**CONFIGURED).exchange("ok", "http://h/cb", None)
    assert (grant.owner_email, grant.refresh_token, grant.scopes) == (
        "u@example.com", "rt", ("openid", "cal"))
    assert "rt" not in repr(grant)
    with pytest.raises(CodeRejected) as refused:
        exchanger(**CONFIGURED).exchange("reused", "http://h/cb", None)
    assert refused.value.reason == "invalid_grant"
    with pytest.raises(ExchangeUnavailable):
        exchanger(**CONFIGURED).exchange("down", "http://h/cb", None)


def test_unconfigured_oauth_is_a_failed_precondition(oauth_module: Any) -> None:
    with pytest.raises(OAuthNotConfigured):
        exchanger().exchange("ok", "http://h/cb", None)
    with pytest.raises(OAuthNotConfigured):
        exchanger(CALSYNC_OAUTH_CLIENT_ID="cid").consent_config()


def test_consent_config() -> None:
    config = exchanger(**CONFIGURED).consent_config()
    assert config == {"client_id": "cid", "scopes": list(CONSENT_SCOPES),
                      "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                      "access_type": "offline", "prompt": "consent"}
    local = exchanger(**CONFIGURED, CALSYNC_OAUTH_TOKEN_URI="http://127.0.0.1:5/token")
    assert local.consent_config()["auth_uri"] == "http://127.0.0.1:5/auth"
