"""The OAuth code exchange of the connect flow (DESIGN.md, "Accounts and subscriptions").

The consumer app sends its user to Google's consent screen (built from
`OAuthConfig`), receives a code at its redirect URI and hands it to calsync;
`CodeExchange.exchange` trades it at the token endpoint (google-auth-oauthlib)
for a refresh token and the owner's identity from the ID token.

Two oauthlib checks are process-wide environment switches, so neither is set:

- Scope equality (`OAUTHLIB_RELAX_TOKEN_SCOPE`): Google may answer with more or
  fewer scopes than asked (granular consent, previously granted scopes); oauthlib
  then raises a plain `Warning` carrying the parsed token. We catch exactly that
  Warning, for this one call, and check the granted scopes ourselves.
- Plain http (`OAUTHLIB_INSECURE_TRANSPORT`): requests-oauthlib refuses any
  non-https URL before sending and offers no per-session switch. For a loopback
  token endpoint (the emulator) oauthlib is given the https spelling of the URL
  and this session alone carries a transport adapter, mounted for exactly that
  origin, that speaks plain http. Non-loopback http is refused at construction.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from google.auth import exceptions as auth_exceptions
from google.auth import jwt
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2 import OAuth2Error
from oauthlib.oauth2.rfc6749.tokens import OAuth2Token
from requests.adapters import HTTPAdapter

from functions.errors import CalsyncError, Misconfigured
from functions.model import CALENDAR_LIST_SCOPE

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events.readonly"
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
# The calendar list's scope too: an account (connect once, every calendar follows) lists
# and watches it; a grant without it still subscribes single calendars.
SCOPES = ("openid", EMAIL_SCOPE, CALENDAR_SCOPE, CALENDAR_LIST_SCOPE)
_CLOCK_SKEW_SECONDS = 300
# OAuth errors that say our client registration is wrong, not the user's code.
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
_SERVER_ERRORS = frozenset({"server_error", "temporarily_unavailable"})


class OAuthError(CalsyncError):
    """The code exchange did not produce a usable grant."""


class OAuthExchangeRejected(OAuthError):
    """The code or what it grants is refused (the API answers 400 with this message).

    `reason` is Google's `error` (`invalid_grant`, ...) or ours (`scope_not_granted`,
    `no_refresh_token`, `email_not_verified`, `wrong_audience`, `invalid_id_token`).
    """

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}" if description else reason)
        self.reason = reason
        self.description = description


class OAuthUnavailable(OAuthError):
    """The token endpoint could not be reached or failed on its side (the API answers 503)."""


@dataclass(frozen=True)
class ExchangedGrant:
    """What a successful exchange yields; the refresh token must be sealed at once."""

    owner_email: str
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class OAuthConfig:
    """What an app needs to build the consent URL (`GET /v1/oauth/config`)."""

    client_id: str
    scopes: tuple[str, ...]
    auth_uri: str
    access_type: str = "offline"
    prompt: str = "consent"

    def to_json(self) -> dict[str, Any]:
        """The JSON body of `GET /v1/oauth/config`."""
        return {
            "client_id": self.client_id,
            "scopes": list(self.scopes),
            "auth_uri": self.auth_uri,
            "access_type": self.access_type,
            "prompt": self.prompt,
        }


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback IP address literal (127.0.0.0/8, ::1)."""
    try:
        host = urlsplit(url).hostname
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_endpoint(url: str, name: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise Misconfigured(f"{name} must be an http(s) URL: {url!r}")
    if parts.scheme == "http" and not is_loopback_url(url):
        raise Misconfigured(f"{name} may use plain http only on a loopback address: {url!r}")
    return url


class _PlainHttpAdapter(HTTPAdapter):
    """Sends the https spelling of a loopback URL as plain http (this session only)."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if request.url and request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://") :]
        return super().send(request, *args, **kwargs)


def _raise_on_server_failure(response: requests.Response) -> requests.Response:
    if response.status_code >= 500 or response.status_code == 429:
        raise OAuthUnavailable(f"token endpoint answered {response.status_code}")
    return response


class CodeExchange:
    """Exchanges authorization codes for one OAuth client.

    Settings: CALSYNC_OAUTH_CLIENT_ID, CALSYNC_OAUTH_CLIENT_SECRET,
    CALSYNC_OAUTH_TOKEN_URI (the emulator's /token locally; Google's otherwise)
    and the consent page's address (Google's unless an emulator's is given).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_uri: str = GOOGLE_TOKEN_URI,
        auth_uri: str = GOOGLE_AUTH_URI,
        timeout: float = 10.0,
    ) -> None:
        if not client_id:
            raise Misconfigured("no OAuth client id is configured (CALSYNC_OAUTH_CLIENT_ID)")
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_uri = _checked_endpoint(token_uri or GOOGLE_TOKEN_URI, "token URI")
        self._auth_uri = _checked_endpoint(auth_uri or GOOGLE_AUTH_URI, "auth URI")
        self._timeout = timeout
        parts = urlsplit(self._token_uri)
        self._plain_http_origin: str | None = None
        if parts.scheme == "http":
            self._plain_http_origin = f"https://{parts.netloc}/"
            self._secure_token_uri = "https" + self._token_uri[len("http") :]
        else:
            self._secure_token_uri = self._token_uri
        # The emulator issues ID tokens as its own origin; Google as accounts.google.com.
        origin = f"{parts.scheme}://{parts.netloc}"
        self._issuers = (origin,) if is_loopback_url(self._token_uri) else GOOGLE_ISSUERS

    def config(self) -> OAuthConfig:
        """What `GET /v1/oauth/config` returns."""
        return OAuthConfig(client_id=self._client_id, scopes=SCOPES, auth_uri=self._auth_uri)

    def exchange(
        self, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> ExchangedGrant:
        """Trade `code` for the owner's refresh token.

        Raises `OAuthExchangeRejected` for a bad, reused or expired code, a wrong
        redirect URI or verifier, no refresh token, the calendar scope not granted, an
        unverified email or an ID token for another client; `OAuthUnavailable` when the
        token endpoint cannot be reached or fails; `Misconfigured` when Google refuses
        our client credentials.
        """
        if not code or not redirect_uri:
            raise OAuthExchangeRejected("invalid_request", "code and redirect_uri are required")
        flow = Flow.from_client_config(
            {
                "web": {
                    "client_id": self._client_id,
                    "client_secret": self._client_secret,
                    "auth_uri": self._auth_uri,
                    "token_uri": self._secure_token_uri,
                }
            },
            scopes=list(SCOPES),
            redirect_uri=redirect_uri,
            autogenerate_code_verifier=False,
        )
        session = flow.oauth2session
        session.max_redirects = 0  # a token endpoint answers; it never sends us elsewhere
        if self._plain_http_origin is not None:
            session.mount(self._plain_http_origin, _PlainHttpAdapter())
            session.trust_env = False  # loopback: never through a proxy from the environment
        session.register_compliance_hook("access_token_response", _raise_on_server_failure)
        try:
            token: Mapping[str, Any] = flow.fetch_token(
                code=code, code_verifier=code_verifier or None, timeout=self._timeout
            )
        except OAuth2Error as err:
            raise self._translate(err) from err
        except requests.RequestException as err:
            raise OAuthUnavailable(f"token endpoint unreachable: {type(err).__name__}") from err
        except Warning as changed:
            # oauthlib's scope-equality check, relaxed for this call only (module docstring).
            parsed = getattr(changed, "token", None)
            if not isinstance(parsed, OAuth2Token):
                raise
            token = parsed
        return self._grant(token)

    def _translate(self, err: OAuth2Error) -> CalsyncError:
        reason = str(err.error or "invalid_grant")
        description = str(err.description or "")
        if reason in _CLIENT_ERRORS:
            return Misconfigured(f"the token endpoint refused our OAuth client: {reason}")
        if reason in _SERVER_ERRORS or reason == "missing_token":
            return OAuthUnavailable(f"token endpoint failed: {reason} {description}".strip())
        return OAuthExchangeRejected(reason, description)

    def _grant(self, token: Mapping[str, Any]) -> ExchangedGrant:
        scopes = _granted_scopes(token)
        if CALENDAR_SCOPE not in scopes:
            raise OAuthExchangeRejected(
                "scope_not_granted", f"the user did not grant {CALENDAR_SCOPE}"
            )
        refresh_token = token.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            raise OAuthExchangeRejected(
                "no_refresh_token",
                "no refresh token came back (ask with access_type=offline and prompt=consent)",
            )
        return ExchangedGrant(self._owner(token.get("id_token")), refresh_token, scopes)

    def _owner(self, id_token: object) -> str:
        """The verified email of the ID token (OpenID Connect Core 3.1.3.7).

        The token came straight from the token endpoint over TLS, so its signature
        need not be checked; issuer, audience, expiry and email still are.
        """
        if not isinstance(id_token, str) or not id_token:
            raise OAuthExchangeRejected("invalid_id_token", "no ID token came back")
        try:
            claims = jwt.decode(id_token, verify=False)
        except (ValueError, auth_exceptions.GoogleAuthError) as err:
            raise OAuthExchangeRejected("invalid_id_token", "the ID token is malformed") from err
        if not isinstance(claims, Mapping):
            raise OAuthExchangeRejected("invalid_id_token", "the ID token is malformed")
        if claims.get("iss") not in self._issuers:
            raise OAuthExchangeRejected("invalid_id_token", "the ID token has another issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._client_id not in audiences or (
            len(audiences) > 1 and claims.get("azp") != self._client_id
        ):
            raise OAuthExchangeRejected("wrong_audience", "the ID token is for another client")
        expiry = claims.get("exp")
        if not isinstance(expiry, (int, float)) or expiry < time.time() - _CLOCK_SKEW_SECONDS:
            raise OAuthExchangeRejected("invalid_id_token", "the ID token has expired")
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise OAuthExchangeRejected("invalid_id_token", "the ID token carries no email")
        if claims.get("email_verified") not in (True, "true"):
            raise OAuthExchangeRejected("email_not_verified", f"{email} is not verified")
        return email


def _granted_scopes(token: Mapping[str, Any]) -> tuple[str, ...]:
    """The scopes granted, in the order asked for, then any others Google added."""
    if isinstance(token, OAuth2Token):
        granted = set(token.scopes)
    else:
        raw = token.get("scope") or []
        granted = set(raw.split() if isinstance(raw, str) else raw)
    return tuple(s for s in SCOPES if s in granted) + tuple(sorted(granted - set(SCOPES)))
