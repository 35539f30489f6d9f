"""Wires the API's ports to the real adapters; the one place that knows them.

`ServiceCommands` adapts `functions.subscriptions.SubscriptionService`. It
speaks the service's target contract (`subscribe(..., labels) ->
SubscribeResult`, `begin_unsubscribe`) and falls back to the older one
(`subscribe -> (subscription, channel)`, synchronous `unsubscribe`) while that
is what the service offers; the fallbacks go once the service has the contract.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from functions.api_ports import (
    CodeExchanger,
    CodeRejected,
    CredentialSealer,
    ExchangedGrant,
    ExchangeUnavailable,
    OAuthNotConfigured,
    Subscribed,
    SubscriptionCommands,
)
from functions.config import Settings
from functions.credentials import OAUTH_PREFIX, CredentialVault, SealError
from functions.errors import InvalidTransition
from functions.model import ACTIVE, DELETING, ERROR, PAUSED

EMULATOR_AUTH_PATH = "/o/oauth2/v2/auth"
REAUTHORIZATION_REQUIRED = "reauthorization_required"


class ServiceCommands(SubscriptionCommands):
    def __init__(self, service: Callable[[], Any], subscriptions: Any, store: Any,
                 vault: Callable[[], CredentialVault]) -> None:
        self._service = service  # built on first use: subscribing needs the task queue
        self._subs = subscriptions  # functions.subscription_store.SubscriptionStore
        self._store = store  # functions.store.FirestoreStore (full-resync requests)
        self._vault = vault

    def _status(self, sub_id: str) -> tuple[str, dict[str, Any]]:
        from functions.subscriptions import SubscriptionNotFound

        found = self._subs.get(sub_id)
        if found is None:
            raise SubscriptionNotFound(sub_id)
        return found[0].status, found[1]

    def subscribe(self, calendar_id: str, owner: str, credentials_ref: str,
                  labels: dict[str, str]) -> Subscribed:
        service = self._service()
        if "labels" in inspect.signature(service.subscribe).parameters:
            result = service.subscribe(calendar_id, owner, credentials_ref, labels=labels)
            return Subscribed(result.subscription.id, bool(result.created), bool(result.queued))
        sub, _ = service.subscribe(calendar_id, owner, credentials_ref)  # older contract
        self._subs.update(sub.id, {"labels": dict(labels)})
        return Subscribed(sub.id, created=True, queued=True)

    def reauthorize(self, sub_id: str, credentials_ref: str) -> None:
        status, data = self._status(sub_id)
        if status == DELETING:
            raise InvalidTransition(f"subscription {sub_id} is being deleted", status)
        old = str(data.get("credentials_ref") or "")
        self._subs.update(sub_id, {"credentials_ref": credentials_ref})
        if old.startswith(OAUTH_PREFIX) and old != credentials_ref:
            self._vault().delete(old[len(OAUTH_PREFIX):])
        waiting = (data.get("last_error_reason") == REAUTHORIZATION_REQUIRED
                   or REAUTHORIZATION_REQUIRED in str(data.get("last_error") or ""))
        if status == ERROR and waiting:
            self._service().resume(sub_id)

    def pause(self, sub_id: str) -> None:
        status, _ = self._status(sub_id)
        if status == PAUSED:
            return
        if status == DELETING:
            raise InvalidTransition(f"subscription {sub_id} is being deleted", status)
        self._service().pause(sub_id)

    def resume(self, sub_id: str) -> None:
        status, _ = self._status(sub_id)
        if status == ACTIVE:
            return
        if status == DELETING:
            raise InvalidTransition(f"subscription {sub_id} is being deleted", status)
        self._service().resume(sub_id)

    def unsubscribe(self, sub_id: str) -> None:
        service = self._service()
        begin = getattr(service, "begin_unsubscribe", None)
        if begin is not None:
            begin(sub_id)
        else:
            service.unsubscribe(sub_id)

    def resync(self, sub_id: str, full: bool) -> None:
        status, _ = self._status(sub_id)
        if status != ACTIVE:
            raise InvalidTransition(f"subscription {sub_id} is {status}: resume it first",
                                    status)
        if full:
            self._store.request_full_resync(sub_id)
        self._service().request_sync(sub_id, origin="resync")  # as the CLI


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
    """`functions.oauth.CodeExchange` (h-oauth), imported when first used."""

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
            try:
                from functions import oauth  # type: ignore[attr-defined,unused-ignore]
            except ImportError:
                raise OAuthNotConfigured("this build has no OAuth code exchange") from None
            auth_uri = ""
            if settings.oauth_token_uri and oauth.is_loopback_url(settings.oauth_token_uri):
                # The local emulator serves the consent page beside its token endpoint.
                auth_uri = settings.oauth_token_uri.rsplit("/", 1)[0] + EMULATOR_AUTH_PATH
            self._exchange = oauth.CodeExchange(
                settings.oauth_client_id, settings.oauth_client_secret,
                token_uri=settings.oauth_token_uri, auth_uri=auth_uri)
        return self._exchange

    def exchange(self, code: str, redirect_uri: str,
                 code_verifier: str | None) -> ExchangedGrant:
        exchange = self._code_exchange()
        from functions import oauth  # type: ignore[attr-defined,unused-ignore]

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
    """The api function's settings (it reads what the worker reads, to enqueue syncs)."""
    from functions import app, config

    return app.settings(getattr(config, "API", config.WORKER))


def build() -> Any:
    """The `Api` over the real adapters (Firestore, Cloud Tasks, the OAuth endpoint)."""
    from functions import app
    from functions.api import Api
    from functions.api_openapi import document
    from functions.api_tokens import PageTokens
    from functions.api_views import FirestoreSubscriptions
    from functions.feed import Feed
    from functions.subscription_store import SubscriptionStore

    settings = api_settings()
    client = app.firestore_client(settings)
    # Page tokens are signed with keys derived from the credential keys when there
    # are any; otherwise they are still checked for integrity (not secret then).
    keys = list(settings.credential_keys.values()) or [settings.project.encode()]
    tokens = PageTokens(keys)

    def vault() -> CredentialVault:
        return CredentialVault(client, settings.credential_keys)

    commands = ServiceCommands(lambda: app.subscription_service(settings),
                               SubscriptionStore(client), app.store(settings), vault)
    return Api(commands, FirestoreSubscriptions(client, tokens), Feed(client, tokens),
               OAuthExchanger(settings), VaultSealer(vault), document)
