"""Refresh tokens sealed at rest: AES-GCM under a versioned key.

The key id travels with the ciphertext (`v1.<key id>.<nonce+ciphertext>`), so
keys rotate without re-encrypting everything at once; the credential's id is
bound as associated data, so a sealed value cannot be moved to another record.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from functions.errors import SealError, SealKeyMissing

SEAL_VERSION = "v1"


def _aes_key(raw: bytes) -> bytes:
    # Keys in the keyring are at least 16 bytes; AES-GCM takes 16, 24 or 32.
    return raw[:32] if len(raw) >= 32 else raw[:24] if len(raw) >= 24 else raw[:16]


def seal(plaintext: str, keyring: Mapping[str, bytes], context: str) -> str:
    """Encrypt under the current (first) key; `context` is bound as associated data."""
    if not keyring:
        raise SealKeyMissing("no credential encryption key is configured "
                             "(CALSYNC_CREDENTIAL_KEYS)")
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
        raise SealKeyMissing(f"sealed under key {parts[1]!r}, which is not configured "
                             "(CALSYNC_CREDENTIAL_KEYS)")
    try:
        blob = base64.urlsafe_b64decode(parts[2])
        plaintext = AESGCM(_aes_key(key)).decrypt(blob[:12], blob[12:], context.encode())
    except (InvalidTag, ValueError, binascii.Error) as err:
        raise SealError("sealed value does not open (tampered, or another context)") from err
    return plaintext.decode()


def key_id_of(sealed: str) -> str:
    parts = sealed.split(".")
    return parts[1] if len(parts) == 3 else ""
