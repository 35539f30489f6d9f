"""The emulator application: wires the store, auth, faults and push delivery to the routes."""

from __future__ import annotations

from .api_routes import handle_api
from .auth import Auth
from .channels import MAX_TTL_SECONDS
from .clock import Clock
from .consent import handle_consent
from .control_routes import handle_control
from .counters import Counters
from .errors import not_found
from .faults import Faults
from .http_types import Request, Response, json_response
from .listing import ListSettings
from .push import PushHub
from .store import Store

DEFAULT_UPDATED_MIN_MAX_AGE = 28 * 24 * 3600.0


class Emulator:
    """All state of one emulator instance; ``handle`` answers one HTTP request."""

    def __init__(self, enforce_auth: bool = False) -> None:
        self.clock = Clock()
        self.counters = Counters()
        self.store = Store(self.clock)
        self.auth = Auth(self.clock, self.counters, enforce_auth)
        self.faults = Faults(self.clock)
        self.push = PushHub(self.clock, self.counters)
        self.store.add_listener(lambda calendar_id: self.push.changed(f"events:{calendar_id}"))
        self._defaults()

    def _defaults(self) -> None:
        self.list_settings = ListSettings()
        self.updated_min_max_age: float | None = DEFAULT_UPDATED_MIN_MAX_AGE
        self.max_channel_ttl = MAX_TTL_SECONDS

    def reset(self) -> None:
        """Back to an empty emulator with default settings (the auth mode stays)."""
        self.push.reset()
        self.store.reset()
        self.auth.reset()
        self.faults.reset()
        self.counters.reset()
        self.clock.reset()
        self._defaults()

    def handle(self, request: Request) -> Response:
        """Route a request to the API, the token endpoint, the consent page or the control API."""
        segments = request.segments
        if segments[:2] == ("calendar", "v3"):
            return handle_api(self, request, segments[2:])
        if segments == ("token",) and request.method == "POST":
            self.counters.add("calls", "token")
            self.faults.check("token", None)
            return self.auth.token_endpoint(request)
        if segments == ("o", "oauth2", "v2", "auth") and request.method == "GET":
            self.counters.add("calls", "consent")
            return handle_consent(self.auth, request)
        if segments[:1] == ("control",):
            if segments[1:] == ("health",):
                return json_response({"ok": True})
            return handle_control(self, request, segments[1:])
        raise not_found()

    def close(self) -> None:
        """Stop background work (push delivery)."""
        self.push.close()
