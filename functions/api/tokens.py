"""Opaque, tamper-evident page tokens.

A token is `base64url(JSON) "." base64url(HMAC-SHA256[:16])`, bound to what it
pages (the subscription and its filters), so a token edited by hand, cut short,
or replayed against another subscription or filter is a 400, never a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

from functions.api.errors import invalid

VERSION = 1
_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Signs and checks page tokens with `keys` (the first signs; all verify)."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self._keys = [hashlib.sha256(b"calsync page token\x00" + key).digest() for key in keys]
        if not self._keys:
            raise ValueError("PageTokens needs at least one key")

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, kind: str, scope: str, fields: dict[str, Any]) -> str:
        payload = json.dumps({"v": VERSION, "k": kind, "s": scope, **fields},
                             separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._mac(self._keys[0], payload))}"

    def decode(self, token: str, kind: str, scope: str) -> dict[str, Any]:
        """The token's fields; ApiError invalid_argument unless it is ours, for this scope."""
        bad = invalid("page_token is not a token this request issued", field="page_token")
        body, _, mac = token.partition(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise bad from None
        if not any(hmac.compare_digest(given, self._mac(k, payload)) for k in self._keys):
            raise bad
        try:
            fields = json.loads(payload)
        except ValueError:
            raise bad from None
        if (not isinstance(fields, dict) or fields.get("v") != VERSION
                or fields.get("k") != kind or fields.get("s") != scope):
            raise bad
        return fields
