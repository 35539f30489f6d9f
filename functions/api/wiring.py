"""Wires the API's ports to the real adapters; the one place that knows them.

`ServiceCommands` adapts `functions.lifecycle.subscriptions.SubscriptionService` (the
same service the operator CLI calls), `ServiceAccounts` `functions.lifecycle.accounts.
AccountService`; `OAuthExchanger` adapts h-oauth's
`functions.adapters.google.oauth.CodeExchange`; `VaultSealer` seals refresh tokens at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from functions.adapters.firestore.credentials import CredentialVault
from functions.api.account_views import account_json
from functions.api.tokens import PageTokens
from functions.config import Settings
from functions.errors import CodeRejected, ExchangeUnavailable, OAuthNotConfigured, SealError
from functions.model import OAUTH_PREFIX
from functions.ports import (
    AccountCommands,
    AccountReader,
    CodeExchanger,
    Connected,
    CredentialSealer,
    ExchangedGrant,
    Subscribed,
    SubscriptionCommands,
)


class ServiceCommands(SubscriptionCommands):
    def __init__(self, service: Callable[[], Any], store: Any,
                 vault: Callable[[], CredentialVault],
                 accounts: Callable[[], Any] | None = None) -> None:
        self._service = service  # built on first use
        self._store = store  # the Firestore store (full-resync requests)
        self._vault = vault
        self._accounts = accounts  # the AccountService, for subscriptions of an account

    def subscribe(self, calendar_id: str, owner: str, credentials_ref: str,
                  labels: dict[str, str]) -> Subscribed:
        result = self._service().subscribe(calendar_id, owner, credentials_ref, labels=labels)
        return Subscribed(result.subscription.id, bool(result.created), bool(result.queued))

    def reauthorize(self, sub_id: str, credentials_ref: str) -> None:
        from functions.errors import SubscriptionNotFound

        current = self._store.get_subscription(sub_id)
        if current is None:
            raise SubscriptionNotFound(sub_id)
        found = self._service().store.get(sub_id)
        account_id = (found[1].get("account_id") if found else None) or None
        if account_id and self._accounts is not None:
            # Its credential is its account's, shared by every calendar the account
            # follows: the new grant is the account's now.
            self._accounts().reauthorize(account_id, credentials_ref)
            return
        self._service().replace_credentials(sub_id, credentials_ref)
        old = current.credentials_ref
        if old.startswith(OAUTH_PREFIX) and old != credentials_ref:
            self._vault().delete(old[len(OAUTH_PREFIX):])

    def pause(self, sub_id: str) -> None:
        self._service().pause(sub_id)

    def resume(self, sub_id: str) -> None:
        self._service().resume(sub_id)

    def unsubscribe(self, sub_id: str) -> None:
        self._service().unsubscribe(sub_id)

    def resync(self, sub_id: str, full: bool) -> None:
        self._service().resync(sub_id, full)


ACCOUNT_LIST_TOKEN = "accounts"


class ServiceAccounts(AccountCommands, AccountReader):
    """`AccountCommands` and `AccountReader` over `lifecycle.accounts.AccountService`."""

    def __init__(self, service: Callable[[], Any], tokens: PageTokens) -> None:
        self._service = service  # built on first use
        self._tokens = tokens

    def connect(self, owner: str, credentials_ref: str,
                policy: dict[str, Any] | None) -> Connected:
        from functions.model import CalendarPolicy

        chosen = CalendarPolicy.from_json(policy) if policy is not None else None
        done = self._service().connect(owner, credentials_ref, chosen)
        return Connected(done.account.id, bool(done.created), bool(done.queued))

    def delete(self, account_id: str) -> None:
        self._service().delete(account_id)

    def get(self, account_id: str) -> dict[str, Any] | None:
        from functions.errors import AccountNotFound

        try:
            status = self._service().status(account_id)
        except AccountNotFound:
            return None
        return account_json(dataclasses.asdict(status))

    def search(self, page_token: str | None,
               limit: int) -> tuple[list[dict[str, Any]], str | None]:
        after = None
        if page_token is not None:
            after = self._tokens.decode(page_token, ACCOUNT_LIST_TOKEN, "all").get("l")
            if not isinstance(after, str):
                raise ValueError("page token fields")  # unreachable for a token we signed
        found = self._service().list_status(after, limit + 1)
        page = found[:limit]
        token = (self._tokens.encode(ACCOUNT_LIST_TOKEN, "all", {"l": page[-1].id})
                 if len(found) > limit else None)
        return [account_json(dataclasses.asdict(s)) for s in page], token


class VaultSealer(CredentialSealer):
    def __init__(self, vault: Callable[[], CredentialVault]) -> None:
        self._vault = vault

    def seal(self, refresh_token: str) -> str:
        try:
            return self._vault().store_refresh_token(refresh_token)
        except SealError as err:
            raise OAuthNotConfigured(str(err)) from None

    def discard(self, credentials_ref: str) -> None:
        if credentials_ref.startswith(OAUTH_PREFIX):
            self._vault().delete(credentials_ref[len(OAUTH_PREFIX):])


class OAuthExchanger(CodeExchanger):
    """`functions.adapters.google.oauth.CodeExchange` (h-oauth), imported when first used."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._exchange: Any = None

    def _code_exchange(self) -> Any:
        settings = self._settings
        if not settings.oauth_client_id:
            raise OAuthNotConfigured("OAuth is not configured (CALSYNC_OAUTH_CLIENT_ID)")
        if not settings.credential_keys:
            raise OAuthNotConfigured("no key to seal refresh tokens (CALSYNC_CREDENTIAL_KEYS)")
        if self._exchange is None:
            from functions.adapters.google import oauth
            self._exchange = oauth.CodeExchange(
                settings.oauth_client_id, settings.oauth_client_secret,
                token_uri=settings.oauth_token_uri, auth_uri=settings.oauth_auth_uri)
        return self._exchange

    def exchange(self, code: str, redirect_uri: str,
                 code_verifier: str | None) -> ExchangedGrant:
        exchange = self._code_exchange()
        from functions.adapters.google import oauth

        try:
            grant = exchange.exchange(code, redirect_uri, code_verifier)
        except oauth.OAuthExchangeRejected as err:
            raise CodeRejected(str(err.reason), str(err)) from None
        except oauth.OAuthUnavailable as err:
            raise ExchangeUnavailable(str(err)) from None
        return ExchangedGrant(owner_email=grant.owner_email, refresh_token=grant.refresh_token,
                              scopes=tuple(grant.scopes))

    def consent_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self._code_exchange().config().to_json()
        return config


def api_settings() -> Settings:
    """The api function's settings (`config.VARIABLES` used by `api`)."""
    from functions import app
    from functions.config import API

    return app.settings(API)


def build() -> Any:
    """The `Api` over the real adapters (Firestore, Cloud Tasks, the OAuth endpoint)."""
    from functions import app
    from functions.adapters.firestore.feed import FirestoreFeedStore
    from functions.adapters.firestore.views import FirestoreSubscriptionRecords
    from functions.api.feed import Feed
    from functions.api.openapi import document
    from functions.api.service import Api
    from functions.api.views import SubscriptionViews

    settings = api_settings()
    client = app.firestore_client(settings)
    # Page tokens are signed with keys derived from the credential keys when there
    # are any; otherwise they are still checked for integrity (not secret then).
    keys = list(settings.credential_keys.values()) or [settings.project.encode()]
    tokens = PageTokens(keys)

    def vault() -> CredentialVault:
        return CredentialVault(client, settings.credential_keys)

    commands = ServiceCommands(lambda: app.subscription_service(settings), app.store(settings),
                               vault, lambda: app.account_service(settings))
    accounts = ServiceAccounts(lambda: app.account_service(settings), tokens)
    return Api(commands, SubscriptionViews(FirestoreSubscriptionRecords(client), tokens),
               Feed(FirestoreFeedStore(client), tokens),
               OAuthExchanger(settings), VaultSealer(vault), document,
               accounts=accounts, account_reader=accounts)
