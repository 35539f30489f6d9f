"""Who may push: the Google-signed OIDC token Pub/Sub puts in `Authorization`.

The audience alone proves nothing: any service account in any project can
mint a Google-signed token for any audience. So the expected identity is the
pair (audience, the push subscription's service account), both required.
"""

from __future__ import annotations

from typing import Any

from .push import Rejected

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")


class PushIdentity:
    """Verifies a push's bearer token: Google's signature, issuer, audience, and
    `email` = the push service account with `email_verified`."""

    def __init__(self, audience: str, service_account: str,
                 certs_url: str | None = None) -> None:
        if not audience:
            raise ValueError("the push audience is required (the push subscription's "
                             "audience, by default its endpoint URL)")
        if "@" not in service_account:
            raise ValueError("the push service account's email is required (a token of "
                             "any other service account must be refused)")
        self.audience = audience
        self.service_account = service_account
        self._certs_url = certs_url  # tests: a local key set instead of Google's

    def verify(self, header: str) -> dict[str, Any]:
        """The token's claims; `Rejected` 401 (no valid token) or 403 (not ours)."""
        from google.auth import exceptions as auth_exceptions
        from google.auth.transport import requests as auth_requests
        from google.oauth2 import id_token

        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Rejected("401 Unauthorized", "missing bearer token")
        try:
            kwargs: dict[str, Any] = {"audience": self.audience}
            if self._certs_url:
                kwargs["certs_url"] = self._certs_url
            claims = dict(id_token.verify_token(token, auth_requests.Request(), **kwargs))
        except (ValueError, auth_exceptions.GoogleAuthError) as err:
            raise Rejected("401 Unauthorized",
                           f"invalid token: {str(err).splitlines()[0]}") from err
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Rejected("401 Unauthorized", "token not issued by Google")
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            raise Rejected("403 Forbidden", "token is not the push service account's")
        return claims
