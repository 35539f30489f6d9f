"""Identity: the bearer token is the user id; ``/token`` issues such tokens for two OAuth grants."""

from __future__ import annotations

import base64
import json
import threading
from urllib.parse import parse_qs

from .clock import Clock
from .counters import Counters
from .errors import auth_error
from .http_types import Request, Response, json_response

ACCESS_TOKEN_SECONDS = 3600
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class Auth:
    """Issued tokens, refresh tokens and the users ``/token`` refuses."""

    def __init__(self, clock: Clock, counters: Counters, enforce: bool) -> None:
        self.clock = clock
        self.counters = counters
        self.enforce = enforce
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget issued tokens and registrations."""
        with self._lock:
            self._valid_until: dict[str, float | None] = {}
            self._refresh_tokens: dict[str, str] = {}
            self._refused: set[str] = set()

    def register_user(self, user: str, refresh_token: str | None = None) -> None:
        """Accept ``user`` as a bearer token even when auth is enforced (it never expires)."""
        with self._lock:
            self._valid_until[user] = None
            if refresh_token:
                self._refresh_tokens[refresh_token] = user

    def register_refresh_token(self, refresh_token: str, user: str) -> None:
        """Map a refresh token to a user (``rt:<user>`` works without registration)."""
        with self._lock:
            self._refresh_tokens[refresh_token] = user

    def set_invalid_grant(self, user: str, refused: bool) -> None:
        """Make ``/token`` answer ``invalid_grant`` for a user and revoke their access tokens."""
        with self._lock:
            if refused:
                self._refused.add(user)
                self._valid_until.pop(user, None)
            else:
                self._refused.discard(user)

    def expire_access_tokens(self, user: str) -> None:
        """Make the user's current access token answer 401 (auth enforced) until refreshed."""
        with self._lock:
            self._valid_until.pop(user, None)

    def user_for(self, request: Request) -> str:
        """The user a request acts as; 401 ``authError`` when the token is missing or not valid."""
        header = request.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise auth_error()
        with self._lock:
            if token in self._refused:
                raise auth_error()
            if self.enforce:
                if token not in self._valid_until:
                    raise auth_error()
                until = self._valid_until[token]
                if until is not None and self.clock.timestamp() >= until:
                    raise auth_error()
        return token

    def token_endpoint(self, request: Request) -> Response:
        """POST /token for the ``refresh_token`` and ``jwt-bearer`` grants."""
        content_type = request.header("content-type") or ""
        if "json" in content_type:
            try:
                raw = json.loads(request.body or b"{}")
            except ValueError:
                return _oauth_error("invalid_request", "Malformed body.")
            form = {key: str(value) for key, value in raw.items()} if isinstance(raw, dict) else {}
        else:
            form = {
                key: values[-1]
                for key, values in parse_qs(request.body.decode("utf-8", "replace")).items()
            }
        grant = form.get("grant_type")
        if grant == "refresh_token":
            refresh_token = form.get("refresh_token", "")
            with self._lock:
                user = self._refresh_tokens.get(refresh_token)
            if user is None and refresh_token.startswith("rt:"):
                user = refresh_token[3:]
            if not user:
                return _oauth_error("invalid_grant", "Bad Request")
        elif grant == _JWT_BEARER:
            user = _jwt_subject(form.get("assertion", ""))
            if not user:
                return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        else:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant}")
        with self._lock:
            if user in self._refused:
                self.counters.add("tokens", "refused")
                return _oauth_error("invalid_grant", "Token has been expired or revoked.")
            self._valid_until[user] = self.clock.timestamp() + ACCESS_TOKEN_SECONDS
        self.counters.add("tokens", grant.rsplit(":", 1)[-1])
        body: dict[str, object] = {
            "access_token": user,
            "expires_in": ACCESS_TOKEN_SECONDS,
            "token_type": "Bearer",
        }
        if form.get("scope"):
            body["scope"] = form["scope"]
        return json_response(body)


def _jwt_subject(assertion: str) -> str | None:
    """``sub`` (domain-wide delegation) else ``iss`` of an unverified JWT."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    if not isinstance(claims, dict):
        return None
    subject = claims.get("sub") or claims.get("iss")
    return subject if isinstance(subject, str) and subject else None


def _oauth_error(error: str, description: str) -> Response:
    return Response(400, json.dumps({"error": error, "error_description": description}).encode())
