"""The typed exception tree of calsync.

Adapters translate transport errors into these (`raise ... from err`); the
sync core and the worker decide on them and never see HTTP status codes.

    CalsyncError
    ├── CalendarError                 anything the Calendar API answered badly
    │   ├── SyncTokenInvalid          the token expired: a full sync is required
    │   ├── RateLimited               slow down; `retry_after` seconds suggested
    │   │   └── QuotaExhausted        the quota is spent; not back within minutes
    │   ├── CalendarUnavailable       transient (5xx, network); retry later
    │   ├── CredentialsRejected       permanent until someone fixes the grant
    │   ├── CalendarGone              the calendar no longer exists for us
    │   ├── CalendarRequestRejected   the API refused the request itself (4xx)
    │   └── Misconfigured             OUR deployment is wrong (delegation, keys): loud,
    │                                 retried, never the user's subscription in error
    ├── StoreError                    anything Firestore answered badly
    │   ├── StoreUnavailable          transient; retry later
    │   ├── StoreRejected             Firestore refuses the data itself: permanent
    │   └── LeaseLost                 another run holds the subscription now
    ├── QueueUnavailable              a task could not be queued; retry later
    └── InvalidTransition             the subscription's status forbids the change (409)

Outside the tree (each a plain exception the callers catch by name):
ResourceMismatch (a notification's resource id is not its channel's), SealError
(a sealed credential does not open), SubscriptionNotFound / AccountNotFound /
EventMissing / CursorAhead / CursorExpired (what a read found), CodeRejected /
ExchangeUnavailable / OAuthNotConfigured (the OAuth code exchange) and
PublishRefused (Pub/Sub refused one message itself).
"""

from __future__ import annotations


class CalsyncError(Exception):
    """Base of every error calsync raises on purpose."""


class CalendarError(CalsyncError):
    """The Calendar API did not answer as needed."""


class SyncTokenInvalid(CalendarError):
    """The stored sync token is no longer valid: drop it and sync in full."""


class RateLimited(CalendarError):
    """The API asks us to slow down; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExhausted(RateLimited):
    """The project's or user's quota is spent; retrying soon does not help."""


class CalendarUnavailable(CalendarError):
    """A transient failure (server error, timeout, connection reset)."""


# Machine-readable reasons of the permanent errors (DESIGN.md "Whose credentials failed").
REAUTHORIZATION_REQUIRED = "reauthorization_required"
CALENDAR_ACCESS_LOST = "calendar_access_lost"
CALENDAR_NOT_FOUND = "calendar_not_found"


class CredentialsRejected(CalendarError):
    """The subscription's credentials were refused (revoked, expired grant);
    `reason` is `reauthorization_required` or `calendar_access_lost`."""

    def __init__(self, message: str = "", reason: str = REAUTHORIZATION_REQUIRED) -> None:
        super().__init__(message)
        self.reason = reason


class CalendarGone(CalendarError):
    """The calendar does not exist, or is no longer visible to the owner;
    `reason` is `calendar_not_found`."""

    def __init__(self, message: str = "", reason: str = CALENDAR_NOT_FOUND) -> None:
        super().__init__(message)
        self.reason = reason


class CalendarRequestRejected(CalendarError):
    """The API refused the request as malformed; a bug or an API change."""


class Misconfigured(CalendarError):
    """Our own configuration is wrong (delegation not set up, a retired or missing
    key): a 500 and a loud log line; the user's subscription is left untouched and
    recovers by itself once the deployment is fixed."""


class StoreError(CalsyncError):
    """Firestore did not answer as needed."""


class StoreUnavailable(StoreError):
    """A transient Firestore failure; retry later."""


class StoreRejected(StoreError):
    """Firestore refuses the data itself (a document over 1 MiB, a field name it
    rejects, too many index entries): retrying cannot help. The message names
    the event and the reason."""


class LeaseLost(StoreError):
    """The run's lease generation is no longer current: it must write nothing more."""


class QueueUnavailable(CalsyncError):
    """Cloud Tasks refused or failed to queue a task; retry later."""


class InvalidTransition(CalsyncError):
    """The subscription's current status forbids this change (for example resume
    while `deleting`); `status` is what it is now."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


# Failures that retrying cannot fix: the subscription goes to `error`.
PERMANENT_CALENDAR_ERRORS: tuple[type[CalendarError], ...] = (CredentialsRejected, CalendarGone)


class ResourceMismatch(Exception):
    """The notification's resource id is not the channel's."""


class SealError(ValueError):
    """A sealed value cannot be opened (unknown key, tampered, wrong context)."""


class SealKeyMissing(SealError):
    """Sealed under a key id the configured keyring lacks (or no key at all)."""


class SubscriptionNotFound(LookupError):
    """No subscription with that id."""


class AccountNotFound(LookupError):
    """No account with that id."""


class EventMissing(LookupError):
    """The subscription holds no snapshot of that event."""


class CursorAhead(ValueError):
    """The cursor is beyond the last `seq` issued."""

    def __init__(self, cursor: int, change_seq: int) -> None:
        super().__init__(f"cursor {cursor} is beyond the last change {change_seq}")
        self.cursor = cursor
        self.change_seq = change_seq


class CursorExpired(Exception):
    """Entries after the cursor are gone (retention): bootstrap again."""

    def __init__(self, cursor: int, oldest_available_seq: int) -> None:
        super().__init__(f"entries after cursor {cursor} are no longer retained; the oldest "
                         f"available is {oldest_available_seq}")
        self.cursor = cursor
        self.oldest_available_seq = oldest_available_seq


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


class PublishRefused(Exception):
    """Pub/Sub refuses a message as invalid (too large, a bad attribute).

    `alone` is True when the refusal names this very message (the client found it
    too large); a refusal from the service fails the whole batch it was in.
    """

    def __init__(self, message: str, alone: bool = False) -> None:
        super().__init__(message)
        self.alone = alone
