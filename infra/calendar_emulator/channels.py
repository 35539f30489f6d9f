"""Watch channels: validation of events.watch / channels.stop bodies and the channel records."""

from __future__ import annotations

import base64
import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from .errors import ApiError, bad_request, not_found

MAX_TTL_SECONDS = 7 * 24 * 3600
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9\-_+/=]{1,64}$")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Channel:
    """A notification channel; mutable state is guarded by the push hub's lock."""

    id: str
    resource_id: str
    resource_key: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int | None
    user: str
    stopped: bool = False
    last_number: int = 1
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_number(self) -> int:
        """The next message number: increasing, with gaps, as Google's are."""
        self.last_number += self.rng.randint(1, 4)
        return self.last_number

    def expired(self, now_ms: int) -> bool:
        """Whether the channel's expiration has passed."""
        return self.expiration_ms is not None and now_ms >= self.expiration_ms

    def resource(self) -> dict[str, Any]:
        """The ``api#channel`` response of events.watch."""
        out: dict[str, Any] = {
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": self.resource_uri,
        }
        if self.token is not None:
            out["token"] = self.token
        if self.expiration_ms is not None:
            out["expiration"] = str(self.expiration_ms)
        return out


@dataclass(frozen=True)
class WatchRequest:
    """A validated watch body."""

    id: str
    address: str
    token: str | None
    expiration_ms: int | None


def resource_id_for(generation: str, resource_key: str) -> str:
    """Opaque and shared by every channel watching the same resource."""
    digest = hashlib.sha256(f"{generation}:{resource_key}".encode()).digest()
    return base64.b32encode(digest).decode().lower().rstrip("=")[:27]


def parse_watch(body: object, now_ms: int, max_ttl: int = MAX_TTL_SECONDS) -> WatchRequest:
    """Validate a channel body; the expiry is the tighter of TTL and ``expiration``."""
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Parse Error")
    channel_id = body.get("id")
    if not channel_id:
        raise ApiError(400, "required", "Required", location_type="other", location="id")
    if not isinstance(channel_id, str) or not _CHANNEL_ID.match(channel_id):
        raise bad_request("invalid", f"Invalid channel id: {channel_id}", "id")
    kind = body.get("type")
    if not kind:
        raise ApiError(400, "required", "Required", location_type="other", location="type")
    if kind not in ("web_hook", "webhook"):
        raise bad_request("invalid", f"Unknown channel type: {kind}", "type")
    address = body.get("address")
    if not address or not isinstance(address, str):
        raise ApiError(400, "required", "Required", location_type="other", location="address")
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise bad_request("invalid", f"Invalid address: {address}", "address")
    if parsed.scheme == "http" and parsed.hostname not in LOOPBACK_HOSTS:
        raise ApiError(400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}")
    token = body.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > 256):
        raise bad_request("invalid", "Channel token must be at most 256 characters.", "token")
    ttl = max_ttl
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise bad_request("invalid", "Invalid params.", "params")
    if "ttl" in params:
        try:
            ttl = int(str(params["ttl"]))
        except ValueError:
            raise bad_request("invalid", f"Invalid ttl: {params['ttl']}", "params.ttl") from None
        if ttl <= 0:
            raise bad_request("invalid", f"Invalid ttl: {params['ttl']}", "params.ttl")
        ttl = min(ttl, max_ttl)
    expiration_ms = now_ms + ttl * 1000
    if body.get("expiration") not in (None, ""):
        try:
            requested = int(str(body["expiration"]))
        except ValueError:
            raise bad_request(
                "invalid", f"Invalid expiration: {body['expiration']}", "expiration"
            ) from None
        if requested <= now_ms:
            raise bad_request("invalid", "Channel expiration must be in the future.", "expiration")
        expiration_ms = min(expiration_ms, requested)
    return WatchRequest(channel_id, address, token, expiration_ms)


def parse_stop(body: object) -> tuple[str, str | None]:
    """(channel id, resource id) of a channels.stop body."""
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Parse Error")
    channel_id = body.get("id")
    if not isinstance(channel_id, str) or not channel_id:
        raise not_found("Channel not found")
    resource_id = body.get("resourceId")
    return channel_id, resource_id if isinstance(resource_id, str) else None
