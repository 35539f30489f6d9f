"""Opaque sync and page tokens: structured values, base64url-encoded."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import bad_request, full_sync_required

_SYNC_PREFIX = "CS1"
_PAGE_PREFIX = "CP1"


@dataclass(frozen=True)
class SyncToken:
    """Where an incremental listing resumes: changes with counter > ``counter``."""

    calendar_id: str
    counter: int
    epoch: str
    issued_at: float


@dataclass(frozen=True)
class PageToken:
    """Position inside one paged listing; ``snapshot`` is the change counter at page one."""

    mode: str  # "full", "sync" or "sorted"
    snapshot: int
    position: int
    sub: int
    fingerprint: str
    since: int  # the sync token's counter, for mode "sync"


def _encode(prefix: str, payload: list[object]) -> str:
    raw = json.dumps([prefix, *payload], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(prefix: str, token: str) -> list[object] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, list) or not payload or payload[0] != prefix:
        return None
    return payload[1:]


def encode_sync_token(token: SyncToken) -> str:
    """The opaque string for a sync token."""
    return _encode(_SYNC_PREFIX, [token.calendar_id, token.counter, token.epoch, token.issued_at])


def decode_sync_token(text: str) -> SyncToken:
    """Parse a sync token; 400 ``invalid`` when it is not one of ours."""
    payload = _decode(_SYNC_PREFIX, text)
    if (
        payload is None
        or len(payload) != 4
        or not isinstance(payload[0], str)
        or not isinstance(payload[1], int)
        or not isinstance(payload[2], str)
        or not isinstance(payload[3], (int, float))
    ):
        raise bad_request("invalid", "Invalid sync token value.", "syncToken")
    return SyncToken(payload[0], payload[1], payload[2], float(payload[3]))


def check_sync_token(token: SyncToken, calendar_id: str, epoch: str, counter: int) -> None:
    """410 ``fullSyncRequired`` unless the token belongs to this calendar's current epoch."""
    if token.calendar_id != calendar_id or token.epoch != epoch or token.counter > counter:
        raise full_sync_required()


def encode_page_token(token: PageToken) -> str:
    """The opaque string for a page token."""
    return _encode(
        _PAGE_PREFIX,
        [token.mode, token.snapshot, token.position, token.sub, token.fingerprint, token.since],
    )


def decode_page_token(text: str, fingerprint: str) -> PageToken:
    """Parse a page token; 400 when malformed or issued for different query parameters."""
    payload = _decode(_PAGE_PREFIX, text)
    if (
        payload is None
        or len(payload) != 6
        or not isinstance(payload[0], str)
        or not all(
            isinstance(value, int) for value in (payload[1], payload[2], payload[3], payload[5])
        )
        or not isinstance(payload[4], str)
    ):
        raise bad_request("invalid", "Invalid page token value.", "pageToken")
    mode, snapshot, position, sub, digest, since = payload
    assert isinstance(mode, str) and isinstance(digest, str)
    assert isinstance(snapshot, int) and isinstance(position, int)
    assert isinstance(sub, int) and isinstance(since, int)
    token = PageToken(mode, snapshot, position, sub, digest, since)
    if token.fingerprint != fingerprint:
        raise bad_request(
            "invalid", "Page token was issued for different query parameters.", "pageToken"
        )
    return token


def query_fingerprint(query: Mapping[str, list[str]]) -> str:
    """A short digest of the query parameters that must stay the same across pages."""
    ignored = {
        "pageToken",
        "syncToken",
        "alt",
        "prettyPrint",
        "fields",
        "quotaUser",
        "key",
        "maxResults",
    }
    items = sorted((key, tuple(values)) for key, values in query.items() if key not in ignored)
    return hashlib.sha1(json.dumps(items).encode()).hexdigest()[:12]
