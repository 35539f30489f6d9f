"""Sealed refresh tokens in Firestore: `credentials/{id}` (DESIGN.md, "Accounts and
subscriptions"); the token is sealed at once and never returned or logged."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from functions.adapters.firestore.catalogue import CREDENTIALS as CREDENTIALS_COLLECTION
from functions.adapters.google.sealing import key_id_of, seal, unseal
from functions.errors import (
    REAUTHORIZATION_REQUIRED,
    CredentialsRejected,
    Misconfigured,
    SealError,
    SealKeyMissing,
)
from functions.model import OAUTH_PREFIX
from functions.ports import RefreshTokenVault


class CredentialVault(RefreshTokenVault):
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
        """The plain refresh token.

        Raises CredentialsRejected when the stored credential is missing or
        malformed (only a new grant helps), Misconfigured when it is sealed
        under a key the settings lack or does not open under the configured
        key of its id (a deployment fix helps).
        """
        snapshot = self._db.collection(CREDENTIALS_COLLECTION).document(credential_id).get()
        data = snapshot.to_dict() if snapshot.exists else None
        if not data or "sealed_refresh_token" not in data:
            raise CredentialsRejected(f"{REAUTHORIZATION_REQUIRED}: stored credentials "
                                      f"{credential_id} not found")
        sealed = data["sealed_refresh_token"]
        try:
            return unseal(sealed, self._keyring, credential_id)
        except SealKeyMissing as err:
            raise Misconfigured(f"stored credentials {credential_id}: {err}") from err
        except SealError as err:
            if key_id_of(sealed) in self._keyring:
                # The key of that id no longer opens it: the key material changed.
                raise Misconfigured(f"stored credentials {credential_id}: {err} "
                                    "(was the key of that id replaced?)") from err
            raise CredentialsRejected(f"{REAUTHORIZATION_REQUIRED}: stored credentials "
                                      f"{credential_id}: {err}") from err

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
