"""The ports the API talks to; `api_wiring` fills them with the real adapters.

Tests wire in-memory fakes of these for the input fuzz; every port also has
an integration test over the real emulators.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from functions.adapters.google.credentials import SCOPES

CALENDAR_SCOPE = SCOPES[0]  # the scope calsync's credentials ask for


@dataclass(frozen=True)
class Subscribed:
    """What subscribing did: `created` False means it existed; `queued` False
    means the renewer's sweep will enqueue the initial sync."""

    sub_id: str
    created: bool
    queued: bool


class SubscriptionCommands(ABC):
    """The lifecycle, as `SubscriptionService` implements it.

    Raise `functions.subscriptions.SubscriptionNotFound` for an unknown id and
    `functions.errors.InvalidTransition` for a change the status forbids; a
    change to the status it already has is a no-op.
    """

    @abstractmethod
    def subscribe(self, calendar_id: str, owner: str, credentials_ref: str,
                  labels: dict[str, str]) -> Subscribed: ...

    @abstractmethod
    def reauthorize(self, sub_id: str, credentials_ref: str) -> None:
        """A fresh OAuth grant for an existing subscription: switch to it, drop
        the old one, and resume if it was in `error` awaiting reauthorization."""

    @abstractmethod
    def pause(self, sub_id: str) -> None: ...

    @abstractmethod
    def resume(self, sub_id: str) -> None: ...

    @abstractmethod
    def unsubscribe(self, sub_id: str) -> None: ...

    @abstractmethod
    def resync(self, sub_id: str, full: bool) -> None: ...


class SubscriptionReader(ABC):
    """Subscriptions as the API shows them (DESIGN.md, "The /v1 contract")."""

    @abstractmethod
    def get(self, sub_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def search(self, status: str | None, labels: tuple[tuple[str, str], ...],
             page_token: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]: ...


class FeedPort(ABC):
    """The change feed and the current events (`functions.feed.Feed`)."""

    @abstractmethod
    def changes(self, sub_id: str, query: Any) -> Any:
        """A `ChangesPage`; raises `SubscriptionMissing`, `CursorAhead`, `CursorExpired`."""

    @abstractmethod
    def events(self, sub_id: str, page_token: str | None, limit: int,
               include_deleted: bool) -> Any:
        """An `EventsPage`; raises `SubscriptionMissing` (and ApiError for a bad token)."""

    @abstractmethod
    def event(self, sub_id: str, event_id: str) -> dict[str, Any]:
        """One event item; raises `SubscriptionMissing`, `EventMissing`."""


@dataclass(frozen=True)
class ExchangedGrant:
    owner_email: str
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...]


class CodeRejected(Exception):
    """Google refused the authorization code (bad, reused, wrong redirect URI) or
    the grant lacks what calsync needs; `reason` is Google's word for it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ExchangeUnavailable(Exception):
    """The token endpoint could not be reached or failed: try again later."""


class OAuthNotConfigured(Exception):
    """This deployment has no OAuth client (or no key to seal refresh tokens)."""


class CodeExchanger(ABC):
    @abstractmethod
    def exchange(self, code: str, redirect_uri: str,
                 code_verifier: str | None) -> ExchangedGrant: ...

    @abstractmethod
    def consent_config(self) -> dict[str, Any]:
        """`client_id`, `scopes`, `auth_uri`, `access_type`, `prompt`."""


class CredentialSealer(ABC):
    @abstractmethod
    def seal(self, refresh_token: str) -> str:
        """Seal and store at once; the subscription's `credentials_ref`."""

    @abstractmethod
    def discard(self, credentials_ref: str) -> None:
        """Delete a sealed credential that ended up unused."""
