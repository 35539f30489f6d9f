"""An account's credentials ask for the calendar list's scope; a subscription's keep the
events scope only (a delegation configured for that one keeps working), and the two
never share a cached client."""

from __future__ import annotations

import base64
from typing import Any

from functions.adapters.google.calendar import GoogleCalendar
from functions.adapters.google.credentials import GoogleCredentialsProvider
from functions.config import Settings
from functions.model import (
    ACCOUNT_SCOPES,
    CALENDAR_LIST_SCOPE,
    CALENDAR_SCOPES,
    Account,
    Subscription,
)
from functions.ports import CredentialsProvider, RefreshTokenVault

KEY = base64.b64encode(b"k" * 32).decode()


class Vault(RefreshTokenVault):
    def store_refresh_token(self, refresh_token: str, credential_id: str | None = None) -> str:
        raise NotImplementedError

    def refresh_token(self, credential_id: str) -> str:
        return "1//token"

    def delete(self, credential_id: str) -> None:
        raise NotImplementedError


def _provider() -> GoogleCredentialsProvider:
    settings = Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "r", "CALSYNC_TASKS_QUEUE": "q",
        "CALSYNC_WORKER_URL": "http://127.0.0.1:1/", "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
        "CALSYNC_CHANNEL_TOKEN_KEYS": f"k:{KEY}", "CALSYNC_OAUTH_CLIENT_ID": "cid",
        "CALSYNC_OAUTH_TOKEN_URI": "http://127.0.0.1:3/token"})
    return GoogleCredentialsProvider(settings, Vault())


def test_the_account_identity_asks_for_the_list_scope() -> None:
    account = Account(id="a1", owner="ann@example.com", credentials_ref="oauth:c1")
    credentials = _provider().credentials_for(account.identity())
    assert tuple(credentials.scopes) == ACCOUNT_SCOPES and CALENDAR_LIST_SCOPE in ACCOUNT_SCOPES
    sub = Subscription(id="s1", calendar_id="x", owner="ann@example.com",
                       credentials_ref="oauth:c1")
    assert tuple(_provider().credentials_for(sub).scopes) == CALENDAR_SCOPES


def test_an_account_and_a_subscription_of_one_owner_get_their_own_clients() -> None:
    built: list[Any] = []

    class Recording(CredentialsProvider):
        def credentials_for(self, subscription: Subscription) -> Any:
            built.append(subscription.scopes)
            return _provider().credentials_for(subscription)

    calendar = GoogleCalendar(Recording(), api_endpoint="http://127.0.0.1:4/calendar/v3/")
    account = Account(id="a1", owner="ann@example.com", credentials_ref="oauth:c1")
    sub = Subscription(id="s1", calendar_id="x", owner="ann@example.com",
                       credentials_ref="oauth:c1")
    calendar._service(sub)
    calendar._service(account.identity())
    calendar._service(sub)
    assert built == [CALENDAR_SCOPES, ACCOUNT_SCOPES]
