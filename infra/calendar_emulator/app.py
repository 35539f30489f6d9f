"""The emulator application: wires the store, auth, faults and push delivery to the routes."""

from __future__ import annotations

from .acl import at_least
from .api_routes import handle_api
from .auth import Auth
from .channels import MAX_TTL_SECONDS, Channel
from .clock import Clock
from .consent import handle_consent
from .control_routes import handle_control
from .counters import Counters
from .errors import not_found
from .faults import Faults
from .http_types import Request, Response, json_response
from .listing import ListSettings
from .push import PushHub
from .quotas import Quotas, QuotaSettings
from .store import Store

DEFAULT_UPDATED_MIN_MAX_AGE = 28 * 24 * 3600.0


class Emulator:
    """All state of one emulator instance; ``handle`` answers one HTTP request."""

    def __init__(self, enforce_auth: bool = False, quotas: QuotaSettings | None = None) -> None:
        self.clock = Clock()
        self.counters = Counters()
        self.store = Store(self.clock)
        self.auth = Auth(self.clock, self.counters, enforce_auth)
        self.faults = Faults(self.clock)
        self.quotas = Quotas(self.clock, quotas)
        self.push = PushHub(self.clock, self.counters, self._may_notify)
        self.store.add_listener(self.push.changed)
        self._defaults()

    def _defaults(self) -> None:
        self.list_settings = ListSettings()
        self.updated_min_max_age: float | None = DEFAULT_UPDATED_MIN_MAX_AGE
        self.max_channel_ttl = MAX_TTL_SECONDS
        self.free_busy_events = "forbidden"

    def _may_notify(self, channel: Channel) -> bool:
        """A calendar's channel tells its user of changes only while the user may read them."""
        kind, _, calendar_id = channel.resource_key.partition(":")
        if kind not in ("events", "acl"):
            return True
        role = self.store.peek_role(calendar_id, channel.user)
        if kind == "acl":
            return at_least(role, "writer")
        return at_least(role, "reader") or (
            role == "freeBusyReader" and self.free_busy_events == "busyOnly"
        )

    def reset(self) -> None:
        """Back to an empty emulator with default settings (auth mode and quota flags stay)."""
        self.push.reset()
        self.store.reset()
        self.auth.reset()
        self.faults.reset()
        self.quotas.reset()
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
