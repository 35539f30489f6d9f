"""Google-shaped API errors: every non-2xx answer of the emulator is one of these."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ApiError(Exception):
    """An error answered as ``{"error": {"errors": [...], "code", "message"}}``."""

    code: int
    reason: str
    message: str
    domain: str = "global"
    location_type: str | None = None
    location: str | None = None

    def body(self) -> dict[str, object]:
        """The JSON body Google sends for this error."""
        item: dict[str, object] = {
            "domain": self.domain,
            "reason": self.reason,
            "message": self.message,
        }
        if self.location_type:
            item["locationType"] = self.location_type
        if self.location:
            item["location"] = self.location
        return {"error": {"errors": [item], "code": self.code, "message": self.message}}

    def to_bytes(self) -> bytes:
        """The serialised body."""
        return json.dumps(self.body()).encode()


def bad_request(reason: str, message: str, location: str | None = None) -> ApiError:
    """A 400 error; ``location`` names the offending parameter when there is one."""
    return ApiError(
        400, reason, message, location_type="parameter" if location else None, location=location
    )


def invalid_param(name: str, value: object) -> ApiError:
    """400 ``invalid`` for a query parameter with a wrong value or type."""
    return bad_request("invalid", f"Invalid value '{value}' for parameter '{name}'.", name)


def required(what: str, message: str) -> ApiError:
    """400 ``required`` for a missing field."""
    return ApiError(400, "required", message, location_type=None, location=what)


def not_found(message: str = "Not Found") -> ApiError:
    """404 ``notFound``."""
    return ApiError(404, "notFound", message)


def auth_error() -> ApiError:
    """401 ``authError`` as Google answers for a missing or unknown bearer token."""
    return ApiError(
        401, "authError", "Invalid Credentials", location_type="header", location="Authorization"
    )


def full_sync_required() -> ApiError:
    """410 for invalidated or expired sync tokens, body exactly as Google sends it."""
    return ApiError(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
        domain="calendar",
        location_type="parameter",
        location="syncToken",
    )


def rate_limited(status: int) -> ApiError:
    """403 ``userRateLimitExceeded`` or 429 ``rateLimitExceeded``."""
    if status == 429:
        return ApiError(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")
    return ApiError(403, "userRateLimitExceeded", "User Rate Limit Exceeded", domain="usageLimits")


_DEFAULT_DOMAINS = {
    "userRateLimitExceeded": "usageLimits",
    "rateLimitExceeded": "usageLimits",
    "quotaExceeded": "usageLimits",
    "dailyLimitExceeded": "usageLimits",
    "fullSyncRequired": "calendar",
}


def injected(status: int, reason: str, message: str | None) -> ApiError:
    """An error injected through the control API."""
    return ApiError(
        status, reason, message or reason, domain=_DEFAULT_DOMAINS.get(reason, "global")
    )
