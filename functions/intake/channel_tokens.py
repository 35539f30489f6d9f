"""Channel tokens: proof that a notification comes from a channel we opened.

A token is `v1.<key id>.<base64url HMAC-SHA256(key, channel id)>`. The key id
inside the token lets keys rotate: new channels are signed with the current
(first) key, and tokens of channels opened under an older key still verify
as long as that key stays in the keyring.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping

VERSION = "v1"
MAX_TOKEN_LENGTH = 256  # Google's limit for a channel token


def new_channel_id() -> str:
    """A fresh channel id (UUID, well under Google's 64-character limit)."""
    return str(uuid.uuid4())


def _mac(key: bytes, channel_id: str) -> str:
    digest = hmac.new(key, f"calsync-channel:{channel_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(channel_id: str, keyring: Mapping[str, bytes]) -> str:
    """The token for `channel_id` under the keyring's current (first) key."""
    key_id, key = next(iter(keyring.items()))
    return f"{VERSION}.{key_id}.{_mac(key, channel_id)}"


def verify(channel_id: str, token: str | None, keyring: Mapping[str, bytes]) -> bool:
    """True only for a well-formed token whose MAC matches; compared in constant time."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        return False
    key = keyring.get(parts[1])
    if key is None:
        return False
    return hmac.compare_digest(parts[2].encode(), _mac(key, channel_id).encode())
