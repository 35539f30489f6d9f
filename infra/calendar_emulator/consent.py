"""The consent page, ``GET /o/oauth2/v2/auth``: the user named by ``login_hint`` consents at once.

Google signs the user in, shows the consent screen, then redirects the browser to
``redirect_uri`` with ``code`` and ``state``. The emulator has no screens:
``login_hint`` names the user, who grants every scope asked for (the control API's
``auth/codes`` covers narrower grants). Refresh tokens follow Google's rule: only
with ``access_type=offline``, and when the same user consents to the same client
again, only with ``prompt=consent``. Errors Google shows on its own page (no client,
no redirect URI) are 400 here; the others go back to the app in the redirect.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode, urlsplit

from .auth import Auth
from .auth_codes import CodeGrant, expand_scopes
from .http_types import Request, Response


def handle_consent(auth: Auth, request: Request) -> Response:
    """Answer one consent request with a redirect to the app (or a 400 page)."""
    params = {key: values[-1] for key, values in request.query.items()}
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    if not client_id:
        return _page(400, "invalid_request", "Missing required parameter: client_id")
    if not _is_redirect_uri(redirect_uri):
        return _page(400, "invalid_request", "Missing or invalid parameter: redirect_uri")
    if not auth.client_known(client_id):
        return _page(401, "invalid_client", "The OAuth client was not found.")
    user = params.get("login_hint", "")
    if not user:
        return _page(400, "invalid_request", "login_hint names the user (no sign-in page here)")
    state = params.get("state")
    if params.get("response_type") != "code":
        return _redirect(redirect_uri, state, error="unsupported_response_type")
    scopes = expand_scopes(params.get("scope", "").split())
    if not scopes:
        return _redirect(redirect_uri, state, error="invalid_scope")
    method = params.get("code_challenge_method", "plain")
    if method not in ("S256", "plain"):
        return _redirect(redirect_uri, state, error="invalid_request")
    offline = params.get("access_type") == "offline" and (
        auth.codes.first_offline_consent(user, client_id)
        or "consent" in params.get("prompt", "").split()
    )
    code = auth.codes.issue(
        CodeGrant(
            user=user,
            redirect_uri=redirect_uri,
            scopes=scopes,
            granted=scopes,
            challenge=params.get("code_challenge") or None,
            challenge_method=method,
            email_verified=True,
            audience=None,
            offline=offline,
            issued_at=auth.clock.timestamp(),
        )
    )
    return _redirect(redirect_uri, state, code=code, scope=" ".join(scopes))


def _is_redirect_uri(value: str) -> bool:
    # It goes into a Location header: printable ASCII only, nothing to split the header.
    if not value.isascii() or not value.isprintable() or " " in value:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


def _redirect(redirect_uri: str, state: str | None, **answer: str) -> Response:
    if state is not None:
        answer["state"] = state
    location = redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(answer)
    return Response(302, b"", content_type="", headers=(("Location", location),))


def _page(status: int, error: str, description: str) -> Response:
    return Response(status, json.dumps({"error": error, "error_description": description}).encode())
