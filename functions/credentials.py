"""Per-subscription Google credentials, and refresh tokens sealed at rest.

A subscription's `credentials_ref` says how calsync acts as its owner:

- `dwd`: a service account with domain-wide delegation, subject = owner
  (Google Workspace). In production the JWT is signed keylessly through the
  IAM API; locally a JSON key file can stand in.
- `oauth:<id>`: a user's OAuth refresh token, stored in `credentials/<id>`
  sealed with AES-GCM under a versioned key (the key id travels with the
  ciphertext, so keys rotate without re-encrypting everything at once).
- `bearer`: local emulator only: the owner's id is the access token.

Tokens and keys never appear in logs, errors or reprs.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from functions.config import Settings
from functions.errors import CredentialsRejected
from functions.model import Subscription
from functions.ports import CredentialsProvider

SCOPES = ("https://www.googleapis.com/auth/calendar.events.readonly",)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SEAL_VERSION = "v1"
CREDENTIALS_COLLECTION = "credentials"
DWD_REF = "dwd"
BEARER_REF = "bearer"
OAUTH_PREFIX = "oauth:"


class SealError(ValueError):
    """A sealed value cannot be opened (unknown key, tampered, wrong context)."""


def _aes_key(raw: bytes) -> bytes:
    # Keys in the keyring are at least 16 bytes; AES-GCM takes 16, 24 or 32.
    return raw[:32] if len(raw) >= 32 else raw[:24] if len(raw) >= 24 else raw[:16]


def seal(plaintext: str, keyring: Mapping[str, bytes], context: str) -> str:
    """Encrypt under the current (first) key; `context` is bound as associated data."""
    if not keyring:
        raise SealError("no credential encryption key is configured (CALSYNC_CREDENTIAL_KEYS)")
    key_id, key = next(iter(keyring.items()))
    nonce = os.urandom(12)
    ciphertext = AESGCM(_aes_key(key)).encrypt(nonce, plaintext.encode(), context.encode())
    blob = base64.urlsafe_b64encode(nonce + ciphertext).decode()
    return f"{SEAL_VERSION}.{key_id}.{blob}"


def unseal(sealed: str, keyring: Mapping[str, bytes], context: str) -> str:
    """Decrypt with whichever key version sealed it; raises SealError."""
    parts = sealed.split(".") if isinstance(sealed, str) else []
    if len(parts) != 3 or parts[0] != SEAL_VERSION:
        raise SealError("sealed value is malformed")
    key = keyring.get(parts[1])
    if key is None:
        raise SealError(f"sealed under key {parts[1]!r}, which is no longer configured")
    try:
        blob = base64.urlsafe_b64decode(parts[2])
        plaintext = AESGCM(_aes_key(key)).decrypt(blob[:12], blob[12:], context.encode())
    except (InvalidTag, ValueError, binascii.Error) as err:
        raise SealError("sealed value does not open (tampered, or another context)") from err
    return plaintext.decode()


def key_id_of(sealed: str) -> str:
    parts = sealed.split(".")
    return parts[1] if len(parts) == 3 else ""


class CredentialVault:
    """Sealed refresh tokens in Firestore: `credentials/{id}`."""

    def __init__(self, db: Any, keyring: Mapping[str, bytes]) -> None:
        self._db = db
        self._keyring = keyring

    def store_refresh_token(self, refresh_token: str, credential_id: str | None = None) -> str:
        """Seal and save; returns the subscription's `credentials_ref`."""
        credential_id = credential_id or uuid.uuid4().hex
        self._db.collection(CREDENTIALS_COLLECTION).document(credential_id).set({
            "kind": "oauth_user",
            "sealed_refresh_token": seal(refresh_token, self._keyring, credential_id),
        })
        return OAUTH_PREFIX + credential_id

    def refresh_token(self, credential_id: str) -> str:
        """The plain refresh token; raises CredentialsRejected if missing or unreadable."""
        snapshot = self._db.collection(CREDENTIALS_COLLECTION).document(credential_id).get()
        data = snapshot.to_dict() if snapshot.exists else None
        if not data or "sealed_refresh_token" not in data:
            raise CredentialsRejected(f"stored credentials {credential_id} not found")
        try:
            return unseal(data["sealed_refresh_token"], self._keyring, credential_id)
        except SealError as err:
            raise CredentialsRejected(f"stored credentials {credential_id}: {err}") from err

    def reseal(self, credential_id: str) -> bool:
        """Re-encrypt under the current key (rotation); True if it changed."""
        ref = self._db.collection(CREDENTIALS_COLLECTION).document(credential_id)
        data = ref.get().to_dict() or {}
        sealed = data.get("sealed_refresh_token", "")
        current = next(iter(self._keyring))
        if key_id_of(sealed) == current:
            return False
        ref.update({"sealed_refresh_token": seal(self.refresh_token(credential_id),
                                                 self._keyring, credential_id)})
        return True

    def delete(self, credential_id: str) -> None:
        self._db.collection(CREDENTIALS_COLLECTION).document(credential_id).delete()


class GoogleCredentialsProvider(CredentialsProvider):
    """Builds google-auth credentials for a subscription from its `credentials_ref`."""

    def __init__(self, settings: Settings, vault: CredentialVault | None) -> None:
        self._settings = settings
        self._vault = vault
        self._token_uri = settings.oauth_token_uri or GOOGLE_TOKEN_URI

    def credentials_for(self, subscription: Subscription) -> Any:
        ref = subscription.credentials_ref or DWD_REF
        if ref == DWD_REF:
            return self._delegated(subscription.owner)
        if ref.startswith(OAUTH_PREFIX):
            return self._user(ref[len(OAUTH_PREFIX):])
        if ref == BEARER_REF and self._settings.calendar_api_endpoint:
            from google.oauth2.credentials import Credentials

            return Credentials(token=subscription.owner)
        raise CredentialsRejected(f"unknown credentials reference kind for {subscription.id}")

    def _user(self, credential_id: str) -> Any:
        from google.oauth2.credentials import Credentials

        settings = self._settings
        if self._vault is None or not settings.oauth_client_id:
            raise CredentialsRejected("per-user OAuth is not configured "
                                      "(CALSYNC_OAUTH_CLIENT_ID, CALSYNC_CREDENTIAL_KEYS)")
        return Credentials(
            token=None,
            refresh_token=self._vault.refresh_token(credential_id),
            token_uri=self._token_uri,
            client_id=settings.oauth_client_id,
            client_secret=settings.oauth_client_secret or None,
            scopes=list(SCOPES),
        )

    def _delegated(self, owner: str) -> Any:
        from google.oauth2 import service_account

        settings = self._settings
        if settings.delegation_key_file:
            credentials = service_account.Credentials.from_service_account_file(
                settings.delegation_key_file, scopes=list(SCOPES))
            if settings.oauth_token_uri:
                credentials = credentials.with_token_uri(settings.oauth_token_uri)
            return credentials.with_subject(owner)
        if not settings.delegation_sa:
            raise CredentialsRejected("domain-wide delegation is not configured "
                                      "(CALSYNC_DELEGATION_SA)")
        # Keyless: the function's own identity signs the JWT through the IAM API
        # (roles/iam.serviceAccountTokenCreator on the delegation account only).
        import google.auth
        from google.auth import iam
        from google.auth.transport.requests import Request

        source, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        signer = iam.Signer(Request(), source, settings.delegation_sa)
        return service_account.Credentials(
            signer, settings.delegation_sa, self._token_uri, scopes=list(SCOPES), subject=owner)
