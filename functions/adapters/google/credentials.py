"""Per-subscription Google credentials.

A subscription's `credentials_ref` says how calsync acts as its owner:

- `dwd`: a service account with domain-wide delegation, subject = owner
  (Google Workspace). In production the JWT is signed keylessly through the
  IAM API; locally a JSON key file can stand in.
- `oauth:<id>`: a user's OAuth refresh token, stored in `credentials/<id>`
  sealed at rest (`sealing`; the vault is `adapters.firestore.credentials`).
- `bearer`: local emulator only: the owner's id is the access token.

Whose fault a failure is decides its outcome (DESIGN.md, "Whose credentials
failed"): a user's grant refused on refresh is that subscription's
`CredentialsRejected` (reason `reauthorization_required`); everything that is
our deployment's doing (delegation not configured or its key retired, the
IAM signer refused, OAuth not configured, a credential sealed under a key the
settings lack) is `Misconfigured`: a loud 500 that leaves subscriptions alone
and recovers by itself once the deployment is fixed.

Tokens and keys never appear in logs, errors or reprs.
"""

from __future__ import annotations

from typing import Any

from google.auth import exceptions as auth_exceptions

from functions.config import Settings
from functions.errors import (
    CALENDAR_ACCESS_LOST,
    REAUTHORIZATION_REQUIRED,
    CalendarError,
    CalendarUnavailable,
    CredentialsRejected,
    Misconfigured,
)
from functions.model import BEARER_REF, CALENDAR_SCOPES, DWD_REF, OAUTH_PREFIX, Subscription
from functions.ports import CredentialsProvider, RefreshTokenVault

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"

# What kind of credentials a refresh failed for (`credential_kind`).
USER_KIND = "oauth_user"
DELEGATION_KIND = "delegation"
BEARER_KIND = "bearer"
# OAuth error codes that mean our client or delegation setup is wrong, never the user.
_OUR_OAUTH_ERRORS = frozenset({"unauthorized_client", "invalid_client", "invalid_scope",
                               "unsupported_grant_type", "invalid_request", "access_denied"})
_MAX_DETAIL = 300


class GoogleCredentialsProvider(CredentialsProvider):
    """Builds google-auth credentials for a subscription from its `credentials_ref`."""

    def __init__(self, settings: Settings, vault: RefreshTokenVault | None) -> None:
        self._settings = settings
        self._vault = vault
        self._token_uri = settings.oauth_token_uri or GOOGLE_TOKEN_URI

    def credentials_for(self, subscription: Subscription) -> Any:
        ref = subscription.credentials_ref or DWD_REF
        scopes = list(subscription.scopes or CALENDAR_SCOPES)
        if ref == DWD_REF:
            return self._delegated(subscription.owner, scopes)
        if ref.startswith(OAUTH_PREFIX):
            return self._user(ref[len(OAUTH_PREFIX):], scopes)
        if ref == BEARER_REF and self._settings.calendar_api_endpoint:
            from google.oauth2.credentials import Credentials

            return Credentials(token=subscription.owner)
        raise CredentialsRejected(f"{REAUTHORIZATION_REQUIRED}: unknown credentials reference "
                                  f"kind for {subscription.id}")

    def _user(self, credential_id: str, scopes: list[str]) -> Any:
        from google.oauth2.credentials import Credentials

        settings = self._settings
        if self._vault is None or not settings.oauth_client_id:
            raise Misconfigured("per-user OAuth is not configured "
                                "(CALSYNC_OAUTH_CLIENT_ID, CALSYNC_CREDENTIAL_KEYS)")
        return Credentials(
            token=None,
            refresh_token=self._vault.refresh_token(credential_id),
            token_uri=self._token_uri,
            client_id=settings.oauth_client_id,
            client_secret=settings.oauth_client_secret or None,
            scopes=scopes,
        )

    def _delegated(self, owner: str, scopes: list[str]) -> Any:
        from google.oauth2 import service_account

        settings = self._settings
        if settings.delegation_key_file:
            try:
                credentials = service_account.Credentials.from_service_account_file(
                    settings.delegation_key_file, scopes=scopes)
            except (OSError, ValueError, KeyError) as err:
                raise Misconfigured("the delegation key file (CALSYNC_DELEGATION_KEY_FILE) "
                                    f"cannot be used: {type(err).__name__}") from err
            if settings.oauth_token_uri:
                credentials = credentials.with_token_uri(settings.oauth_token_uri)
            return credentials.with_subject(owner)
        if not settings.delegation_sa:
            raise Misconfigured("domain-wide delegation is not configured "
                                "(CALSYNC_DELEGATION_SA)")
        # Keyless: the function's own identity signs the JWT through the IAM API
        # (roles/iam.serviceAccountTokenCreator on the delegation account only).
        import google.auth
        from google.auth import iam
        from google.auth.transport.requests import Request

        try:
            source, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except auth_exceptions.DefaultCredentialsError as err:
            raise Misconfigured("keyless delegation needs the function's own identity "
                                f"(application default credentials): {err}") from err
        signer = iam.Signer(Request(), source, settings.delegation_sa)
        return service_account.Credentials(
            signer, settings.delegation_sa, self._token_uri, scopes=scopes,
            subject=owner)


def credential_kind(credentials: Any) -> str | None:
    """What kind of google-auth credentials these are (None: another kind)."""
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    if isinstance(credentials, service_account.Credentials):
        return DELEGATION_KIND
    if isinstance(credentials, user_credentials.Credentials):
        return USER_KIND if credentials.refresh_token else BEARER_KIND
    return None


def _oauth_error(err: auth_exceptions.RefreshError) -> tuple[str, str]:
    """(error, error_description) of a token endpoint's answer, as google-auth raised it."""
    args = err.args
    if len(args) > 1 and isinstance(args[1], dict):
        error, description = args[1].get("error"), args[1].get("error_description")
        if isinstance(error, str):
            return error, description if isinstance(description, str) else ""
    text = str(args[0]) if args else ""
    code, sep, description = text.partition(": ")
    if sep and code and " " not in code:
        return code, description
    return "", text


def auth_failure(err: Exception, kind: str | None) -> CalendarError:
    """The calsync error for a failure to obtain an access token.

    `kind` is what the credentials were (`credential_kind`); None when unknown.
    """
    if isinstance(err, auth_exceptions.RefreshError):
        code, description = _oauth_error(err)
        detail = f"{code or 'refresh failed'}: {description}"[:_MAX_DETAIL]
        if getattr(err, "retryable", False):
            return CalendarUnavailable(f"token refresh failed, transient ({detail})")
        if kind == BEARER_KIND:
            # A bare access token cannot be refreshed: its refusal is final.
            return CredentialsRejected(f"{REAUTHORIZATION_REQUIRED}: the access token was "
                                       "refused and cannot be refreshed",
                                       reason=REAUTHORIZATION_REQUIRED)
        our_jwt = code == "invalid_grant" and kind != USER_KIND and "jwt" in description.lower()
        if code == "invalid_grant" and kind == DELEGATION_KIND and not our_jwt:
            # The JWT was fine, the subject is not (deleted or suspended account).
            return CredentialsRejected(
                f"{CALENDAR_ACCESS_LOST}: Google refused to act as the owner ({detail})",
                reason=CALENDAR_ACCESS_LOST)
        if isinstance(err, auth_exceptions.ReauthFailError) or (
                code == "invalid_grant" and not our_jwt):
            return CredentialsRejected(
                f"{REAUTHORIZATION_REQUIRED}: the owner's grant was refused on refresh "
                f"({detail})", reason=REAUTHORIZATION_REQUIRED)
        if our_jwt:
            return Misconfigured(f"the delegation JWT was refused ({detail}): the delegation "
                                 "key or signer is wrong (retired key, clock skew)")
        if code in _OUR_OAUTH_ERRORS:
            return Misconfigured(f"the token endpoint refused our client ({detail}): check the "
                                 "OAuth client or the domain-wide delegation of the scopes")
        return Misconfigured(f"token refresh failed ({detail})")
    if isinstance(err, auth_exceptions.TransportError):
        text = str(err)
        if "IAM sign" in text:
            # google-auth retries 5xx itself; what is left (403, 404) is our IAM setup.
            return Misconfigured("the IAM API refused to sign the delegation JWT (does the "
                                 "function's identity hold Token Creator on "
                                 f"CALSYNC_DELEGATION_SA?): {text[:_MAX_DETAIL]}")
        return CalendarUnavailable(f"auth transport error: {text[:_MAX_DETAIL]}")
    return Misconfigured(f"credentials failed: {type(err).__name__}")
