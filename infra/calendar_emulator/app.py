"""The emulator application: wires the store, auth, faults and push delivery to the routes."""

from __future__ import annotations

from .errors import not_found
from .http_types import Request, Response, json_response


class Emulator:
    """All state of one emulator instance; ``handle`` answers one HTTP request."""

    def __init__(self, enforce_auth: bool = False) -> None:
        self.enforce_auth = enforce_auth

    def handle(self, request: Request) -> Response:
        """Route a request to the API, the token endpoint or the control API."""
        segments = request.segments
        if segments[:2] == ("control", "health"):
            return json_response({"ok": True})
        raise not_found()

    def close(self) -> None:
        """Stop background work (push delivery)."""
