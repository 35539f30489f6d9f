"""The consumer's client of calsync's `/v1` API: the changes route (to fill a
gap or read a truncated entry) and the events route (to bootstrap)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any


class FeedUnavailable(Exception):
    """The API could not answer now (unreachable, 5xx, or refused us): Pub/Sub
    redelivers the message later, and dead-letters it after its attempts."""


class CursorExpired(Exception):
    """410 `cursor_expired`: entries after the cursor are past retention."""

    def __init__(self, cursor: int, oldest_available_seq: int | None) -> None:
        super().__init__(f"entries after seq {cursor} have expired")
        self.cursor = cursor
        self.oldest_available_seq = oldest_available_seq


class FeedClient:
    """Reads a subscription's feed and events; in production with an ID token
    for the API (`id_token`), locally without one."""

    def __init__(self, api_url: str, id_token: Callable[[], str] | None = None,
                 timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._id_token = id_token
        self._timeout = timeout

    def changes(self, sub_id: str, cursor: int, limit: int = 100) -> dict[str, Any]:
        """One changes page after `cursor`; `CursorExpired` on 410."""
        try:
            return self._get(sub_id, "changes", {"cursor": cursor, "limit": limit})
        except urllib.error.HTTPError as err:
            error = _error_body(err)
            if err.code == 410 and error.get("code") == "cursor_expired":
                oldest = (error.get("details") or {}).get("oldest_available_seq")
                raise CursorExpired(cursor, oldest if isinstance(oldest, int) else None) from err
            raise _unavailable(err, error) from err
        except OSError as err:
            raise FeedUnavailable(f"changes route unavailable: {err}") from err

    def events(self, sub_id: str, page_token: str | None, limit: int) -> dict[str, Any]:
        """One page of the subscription's current events, with `as_of_seq`."""
        query: dict[str, Any] = {"limit": limit}
        if page_token:
            query["page_token"] = page_token
        try:
            return self._get(sub_id, "events", query)
        except urllib.error.HTTPError as err:
            raise _unavailable(err, _error_body(err)) from err
        except OSError as err:
            raise FeedUnavailable(f"events route unavailable: {err}") from err

    def _get(self, sub_id: str, route: str, query: dict[str, Any]) -> dict[str, Any]:
        url = (f"{self.api_url}/v1/subscriptions/{urllib.parse.quote(sub_id, safe='')}"
               f"/{route}?{urllib.parse.urlencode(query)}")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self._id_token is not None:
            request.add_header("Authorization", f"Bearer {self._id_token()}")
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            return dict(json.loads(response.read()))


# The name the first version of this example used.
ChangesClient = FeedClient


def _error_body(err: urllib.error.HTTPError) -> dict[str, Any]:
    """The API's `{"error": {...}}` object, or {} if the body is not one."""
    try:
        error = json.loads(err.read()).get("error")
    except (ValueError, AttributeError, OSError):
        return {}
    return error if isinstance(error, dict) else {}


def _unavailable(err: urllib.error.HTTPError, error: dict[str, Any]) -> FeedUnavailable:
    said = f"the API answered {err.code} {error.get('code') or err.reason}"
    message = error.get("message")
    return FeedUnavailable(f"{said}: {message}" if message else said)
