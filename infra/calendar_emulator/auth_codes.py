"""The authorization-code grant: codes issued through the control API, redeemed at ``/token``.

A code stands for a finished consent screen: the control API says who consented,
to which redirect URI and scopes (and, for tests, what Google should answer
differently: fewer scopes granted, an unverified email, no refresh token). A code
is redeemed once, with its own redirect URI and, when a PKCE challenge was
registered, the matching verifier; anything else is ``invalid_grant``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .clock import Clock

CODE_SECONDS = 600  # Google's authorization codes live about ten minutes.
_SCOPE_PREFIX = "https://www.googleapis.com/auth/"
# Google answers with expanded names; these short forms have special long forms.
_SHORT_SCOPES = {
    "email": _SCOPE_PREFIX + "userinfo.email",
    "profile": _SCOPE_PREFIX + "userinfo.profile",
}


class GrantRefused(Exception):
    """``/token`` answers 400 with this OAuth ``error`` and ``error_description``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass(frozen=True)
class CodeGrant:
    """What one authorization code stands for."""

    user: str
    redirect_uri: str
    scopes: tuple[str, ...]  # what the consent screen asked for (expanded)
    granted: tuple[str, ...]  # what the user granted (expanded; a subset or equal)
    challenge: str | None
    challenge_method: str
    email_verified: bool
    audience: str | None  # None: the client id of the redeeming request
    offline: bool  # False: no refresh token comes back (as without prompt=consent)
    issued_at: float


def expand_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Full scope URLs, as Google reports granted scopes (``openid`` stays as is)."""
    out: list[str] = []
    for scope in scopes:
        if scope == "openid" or "://" in scope:
            full = scope
        else:
            full = _SHORT_SCOPES.get(scope, _SCOPE_PREFIX + scope)
        if full not in out:
            out.append(full)
    return tuple(out)


def pkce_challenge(verifier: str, method: str) -> str:
    """The RFC 7636 challenge of ``verifier`` (``S256`` or ``plain``)."""
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class AuthorizationCodes:
    """Outstanding codes; each is removed on its first redemption attempt."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._codes: dict[str, CodeGrant] = {}
        self._offline_consents: set[tuple[str, str]] = set()
        # Signs ID tokens (HS256); nobody verifies them: they come straight from /token.
        self._key = secrets.token_bytes(32)

    def reset(self) -> None:
        """Forget every outstanding code and every remembered consent."""
        with self._lock:
            self._codes.clear()
            self._offline_consents.clear()

    def issue(self, grant: CodeGrant) -> str:
        """A fresh code for ``grant``."""
        code = "4/" + secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = grant
        return code

    def first_offline_consent(self, user: str, client_id: str) -> bool:
        """True the first time ``user`` grants ``client_id`` offline access (then remembered)."""
        with self._lock:
            first = (user, client_id) not in self._offline_consents
            self._offline_consents.add((user, client_id))
            return first

    def redeem(self, code: str, redirect_uri: str, verifier: str | None) -> CodeGrant:
        """The grant behind ``code``, or ``GrantRefused`` (the code is spent either way)."""
        with self._lock:
            grant = self._codes.pop(code, None)
        if grant is None:
            raise GrantRefused("invalid_grant", "Malformed auth code.")
        if self._clock.timestamp() - grant.issued_at > CODE_SECONDS:
            raise GrantRefused("invalid_grant", "Auth code expired.")
        if redirect_uri != grant.redirect_uri:
            raise GrantRefused("invalid_grant", "Bad Request: redirect_uri does not match.")
        if grant.challenge is not None:
            if not verifier:
                raise GrantRefused("invalid_grant", "Missing code verifier.")
            expected = pkce_challenge(verifier, grant.challenge_method)
            if not hmac.compare_digest(expected, grant.challenge):
                raise GrantRefused("invalid_grant", "Invalid code verifier.")
        return grant

    def id_token(self, grant: CodeGrant, issuer: str, client_id: str) -> str:
        """An HS256 JWT with the OpenID claims Google puts in its ID tokens."""
        now = int(self._clock.timestamp())
        claims = {
            "iss": issuer,
            "azp": client_id,
            "aud": grant.audience if grant.audience is not None else client_id,
            "sub": hashlib.sha256(grant.user.encode()).hexdigest()[:21],
            "email": grant.user,
            "email_verified": grant.email_verified,
            "iat": now,
            "exp": now + 3600,
        }
        header = {"alg": "HS256", "typ": "JWT"}
        signing_input = _segment(header) + "." + _segment(claims)
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")


def _segment(payload: Mapping[str, object]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
