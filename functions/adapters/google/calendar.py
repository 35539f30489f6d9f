"""Calendar adapter over google-api-python-client (static discovery).

Pages `events.list` and turns every failure into the typed exceptions of
`functions.errors`: the core never sees an HTTP status code.

Whose failure it is decides the outcome (DESIGN.md "Whose credentials
failed"): a failure to get a token is classified knowing what kind of
credentials failed (`credentials.auth_failure`), so our misconfiguration is
`Misconfigured` (500, subscriptions untouched) and only the user's own
refusals are permanent. After a fresh token, 403 is the user's access lost
(`calendar_access_lost`) and 404 the calendar gone (`calendar_not_found`),
except the 403s that name our project (the API not enabled).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2.credentials import Credentials
from googleapiclient import discovery
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError

from functions.adapters.google.credentials import auth_failure, credential_kind
from functions.errors import (
    CALENDAR_ACCESS_LOST,
    CALENDAR_NOT_FOUND,
    REAUTHORIZATION_REQUIRED,
    CalendarGone,
    CalendarRequestRejected,
    CalendarUnavailable,
    CredentialsRejected,
    Misconfigured,
    QuotaExhausted,
    RateLimited,
    SyncTokenInvalid,
)
from functions.model import EventPage, Subscription
from functions.ports import CalendarPort, CredentialsProvider

MAX_PAGE_SIZE = 2500
RATE_LIMIT_DELAY = 30.0  # seconds, when the answer suggests none
QUOTA_DELAY = 900.0  # a spent quota does not come back within minutes
HTTP_TIMEOUT = 60.0
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
# 403s about our project, not the user's calendar.
_OUR_403_REASONS = frozenset({"accessNotConfigured", "SERVICE_DISABLED"})
# A watch refused for the webhook address names our deployment, not the user's calendar.
_OUR_400_REASONS = frozenset({"push.webhookUrlNotHttps", "push.webhookUrlUnauthorized",
                              "push.webhookUrlNoHostPrefix"})

_DISCOVERY: dict[str, Any] = {}
_DISCOVERY_LOCK = threading.Lock()


def _discovery_document() -> dict[str, Any]:
    # Parsed once per process; building a service from the dict is cheap.
    with _DISCOVERY_LOCK:
        if not _DISCOVERY:
            text = get_static_doc("calendar", "v3")
            if text is None:
                raise RuntimeError("calendar v3 discovery document is not bundled")
            _DISCOVERY.update(json.loads(text))
    return _DISCOVERY


class OwnerTokenCredentials(CredentialsProvider):
    """Bearer token = the owner's id: what the Calendar emulator accepts.

    Stand-in until per-subscription credentials (service-account delegation,
    stored refresh tokens) exist; it cannot refresh, so a 401 is final.
    """

    def credentials_for(self, subscription: Subscription) -> Any:
        return Credentials(token=subscription.owner)


class _AuthorizedHttp(google_auth_httplib2.AuthorizedHttp):  # type: ignore[misc]
    """Classifies a failure to get a token knowing whose credentials they are."""

    def __init__(self, credentials: Any, http: httplib2.Http) -> None:
        super().__init__(credentials, http=http)
        self._kind = credential_kind(credentials)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().request(*args, **kwargs)
        except (auth_exceptions.RefreshError, auth_exceptions.TransportError) as err:
            raise auth_failure(err, self._kind) from err


class GoogleCalendar(CalendarPort):
    """`CalendarPort` over the real client; `api_endpoint` points at an emulator."""

    def __init__(
        self,
        credentials: CredentialsProvider,
        *,
        api_endpoint: str = "",
        num_retries: int = 0,
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        self._credentials = credentials
        self._api_endpoint = api_endpoint
        self._num_retries = num_retries
        self._timeout = timeout
        # httplib2 connections are not thread-safe: one service per thread and owner.
        self._local = threading.local()

    def _service(self, subscription: Subscription) -> Any:
        cache: dict[tuple[str, str, tuple[str, ...]], Any] = self._local.__dict__.setdefault(
            "services", {})
        key = (subscription.owner, subscription.credentials_ref, subscription.scopes)
        if key not in cache:
            with _translated(None):
                credentials = self._credentials.credentials_for(subscription)
            http = _AuthorizedHttp(credentials, httplib2.Http(timeout=self._timeout))
            options = {"api_endpoint": self._api_endpoint} if self._api_endpoint else None
            cache[key] = discovery.build_from_document(
                _discovery_document(), http=http, client_options=options
            )
        return cache[key]

    def _events(self, subscription: Subscription) -> Any:
        """The service's `events()` resource, kept with it: the client builds a new one,
        methods and all, from the discovery document at every `events()` (1-3 ms of
        CPU a call, on every run's path)."""
        cache: dict[tuple[str, str, tuple[str, ...]], Any] = self._local.__dict__.setdefault(
            "events", {})
        key = (subscription.owner, subscription.credentials_ref, subscription.scopes)
        if key not in cache:
            cache[key] = self._service(subscription).events()
        return cache[key]

    def list_page(
        self,
        subscription: Subscription,
        *,
        sync_token: str | None,
        page_token: str | None,
        page_size: int,
    ) -> EventPage:
        params: dict[str, Any] = {
            "calendarId": subscription.calendar_id,
            "maxResults": min(page_size, MAX_PAGE_SIZE),
            "singleEvents": False,
        }
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        with _translated(sync_token):
            request = self._events(subscription).list(**params)
            response = request.execute(num_retries=self._num_retries)
        return EventPage(
            items=tuple(response.get("items") or ()),
            next_page_token=response.get("nextPageToken"),
            next_sync_token=response.get("nextSyncToken"),
        )


@contextmanager
def _translated(sync_token: str | None) -> Iterator[None]:
    try:
        yield
    except HttpError as err:
        raise classify(err, sync_token) from err
    except (auth_exceptions.RefreshError, auth_exceptions.TransportError) as err:
        raise auth_failure(err, None) from err  # a refresh outside _AuthorizedHttp
    except (OSError, httplib2.HttpLib2Error) as err:
        raise CalendarUnavailable(f"calendar unreachable: {err}") from err


def _reasons(err: HttpError) -> list[str]:
    try:
        body = json.loads(err.content.decode("utf-8", "replace"))
        errors = body.get("error", {}).get("errors", []) if isinstance(body, dict) else []
        return [str(item.get("reason", "")) for item in errors if isinstance(item, dict)]
    except (ValueError, AttributeError):
        return []


def _retry_after(err: HttpError, default: float) -> float:
    raw = err.resp.get("retry-after") if err.resp is not None else None
    try:
        return max(float(raw), 1.0) if raw else default
    except ValueError:
        return default


def classify(err: HttpError, sync_token: str | None = None) -> Exception:
    """The calsync exception for an HTTP error of the Calendar API."""
    status = err.status_code
    reasons = set(_reasons(err))
    message = f"calendar {status} {','.join(sorted(reasons)) or '-'}: {err.reason}"
    if reasons & _QUOTA_REASONS:
        return QuotaExhausted(message, _retry_after(err, QUOTA_DELAY))
    if status == 429 or (status == 403 and reasons & _RATE_REASONS):
        return RateLimited(message, _retry_after(err, RATE_LIMIT_DELAY))
    if status == 410 or (status == 400 and sync_token and "invalid" in reasons):
        return SyncTokenInvalid(message)
    if status == 401:  # refused even after a fresh token
        return CredentialsRejected(f"{REAUTHORIZATION_REQUIRED}: {message}",
                                   reason=REAUTHORIZATION_REQUIRED)
    if status == 400 and reasons & _OUR_400_REASONS:
        return Misconfigured(f"Google refuses our webhook address (CALSYNC_WEBHOOK_URL): "
                             f"{message}")
    if status == 403 and reasons & _OUR_403_REASONS:
        return Misconfigured(f"the Calendar API refuses our project: {message}")
    if status == 403:  # forbidden: access to the calendar was removed
        return CredentialsRejected(f"{CALENDAR_ACCESS_LOST}: {message}",
                                   reason=CALENDAR_ACCESS_LOST)
    if status == 404:
        return CalendarGone(f"{CALENDAR_NOT_FOUND}: {message}", reason=CALENDAR_NOT_FOUND)
    if status >= 500 or status in (408, 409):
        return CalendarUnavailable(message)
    return CalendarRequestRejected(message)
