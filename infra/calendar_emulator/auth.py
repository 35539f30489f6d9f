"""Identity: the bearer token is the user id; ``/token`` issues such tokens for three OAuth grants.

``refresh_token``, ``jwt-bearer`` (service accounts, domain-wide delegation) and
``authorization_code`` (codes from the control API, see ``auth_codes``).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from urllib.parse import parse_qs

from .auth_codes import AuthorizationCodes, CodeGrant, GrantRefused
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
        self.codes = AuthorizationCodes(clock)
        self.reset()

    def reset(self) -> None:
        """Forget issued tokens and registrations."""
        with self._lock:
            self._valid_until: dict[str, float | None] = {}
            self._refresh_tokens: dict[str, str] = {}
            self._refused: set[str] = set()
            self._clients: dict[str, str] = {}
        self.codes.reset()

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

    def register_client(self, client_id: str, client_secret: str) -> None:
        """Once any client is registered, ``/token`` answers ``invalid_client`` to all others."""
        with self._lock:
            self._clients[client_id] = client_secret

    def client_known(self, client_id: str) -> bool:
        """True for a registered client, and for any client while none is registered."""
        with self._lock:
            return not self._clients or client_id in self._clients

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
        """POST /token: ``refresh_token``, ``jwt-bearer`` and ``authorization_code`` grants."""
        form = _form(request)
        if form is None:
            return _oauth_error("invalid_request", "Malformed body.")
        grant = form.get("grant_type")
        extra: dict[str, object] = {}
        try:
            if grant == "refresh_token":
                self._check_client(request, form, required=False)
                user = self._refresh_user(form.get("refresh_token", ""))
            elif grant == _JWT_BEARER:
                subject = _jwt_subject(form.get("assertion", ""))
                if not subject:
                    raise GrantRefused("invalid_grant", "Invalid JWT Signature.")
                user = subject
            elif grant == "authorization_code":
                client_id = self._check_client(request, form, required=True)
                code_grant = self.codes.redeem(
                    form.get("code", ""), form.get("redirect_uri", ""), form.get("code_verifier")
                )
                user = code_grant.user
                extra = self._code_tokens(code_grant, request.base_url, client_id)
            else:
                return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant}")
        except GrantRefused as refused:
            status = 401 if refused.error == "invalid_client" else 400
            return _oauth_error(refused.error, refused.description, status)
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
        body.update(extra)
        return json_response(body)

    def _refresh_user(self, refresh_token: str) -> str:
        with self._lock:
            user = self._refresh_tokens.get(refresh_token)
        if user is None and refresh_token.startswith("rt:"):
            user = refresh_token[3:]
        if not user:
            raise GrantRefused("invalid_grant", "Bad Request")
        return user

    def _check_client(self, request: Request, form: dict[str, str], required: bool) -> str:
        """The client id (HTTP Basic, else the body); ``invalid_client`` if refused.

        Without registered clients any client is accepted, and refreshes need none
        (older tests refresh without client credentials).
        """
        client_id, client_secret = _basic_credentials(request)
        if client_id is None:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        with self._lock:
            clients = dict(self._clients)
        if not client_id and (required or clients):
            raise GrantRefused("invalid_client", "The OAuth client was not found.")
        if clients and clients.get(client_id or "") != client_secret:
            raise GrantRefused("invalid_client", "Unauthorized")
        return client_id or ""

    def _code_tokens(self, grant: CodeGrant, issuer: str, client_id: str) -> dict[str, object]:
        """What the code exchange adds to the access token: scope, ID token, refresh token."""
        out: dict[str, object] = {
            "scope": " ".join(grant.granted),
            "id_token": self.codes.id_token(grant, issuer, client_id),
        }
        if grant.offline:
            refresh_token = "1//" + secrets.token_urlsafe(32)
            with self._lock:
                self._refresh_tokens[refresh_token] = grant.user
            out["refresh_token"] = refresh_token
        return out


def _form(request: Request) -> dict[str, str] | None:
    """The token request's parameters (form-encoded, or JSON as some clients send)."""
    content_type = request.header("content-type") or ""
    if "json" in content_type:
        try:
            raw = json.loads(request.body or b"{}")
        except ValueError:
            return None
        return {key: str(value) for key, value in raw.items()} if isinstance(raw, dict) else {}
    return {
        key: values[-1] for key, values in parse_qs(request.body.decode("utf-8", "replace")).items()
    }


def _basic_credentials(request: Request) -> tuple[str | None, str | None]:
    scheme, _, encoded = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, _, client_secret = decoded.partition(":")
    return client_id, client_secret


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


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    return Response(status, json.dumps({"error": error, "error_description": description}).encode())
