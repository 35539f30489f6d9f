"""The API's one error shape: `{"error": {"code", "message", "details"}}`.

`code` is a stable snake_case word; each maps to one HTTP status (DESIGN.md,
"The /v1 contract"). Handlers raise `ApiError`; the entry point renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INVALID_ARGUMENT = "invalid_argument"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
FAILED_PRECONDITION = "failed_precondition"
CURSOR_EXPIRED = "cursor_expired"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"

# code -> (HTTP status, what it means: the OpenAPI document's description)
CODES: dict[str, tuple[int, str]] = {
    INVALID_ARGUMENT: (400, "The request is malformed; `message` names the field."),
    NOT_FOUND: (404, "No such subscription, event or route."),
    METHOD_NOT_ALLOWED: (405, "The path exists but not with this method; the `Allow` header "
                              "and `details.allowed` name the methods it has."),
    FAILED_PRECONDITION: (409, "The subscription's status forbids this change."),
    CURSOR_EXPIRED: (410, "The cursor is older than the retained feed; "
                          "`details.oldest_available_seq` says where it starts. Bootstrap again."),
    UNAVAILABLE: (503, "A transient failure; retry after `Retry-After` seconds."),
    INTERNAL: (500, "A fault on calsync's side (logged)."),
}
STATUS_CODES: dict[int, str] = {status: code for code, (status, _) in CODES.items()}
RETRY_AFTER_SECONDS = 2


@dataclass
class ApiError(Exception):
    """An answer other than success; `code` is a key of `CODES`."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if self.code not in CODES:
            raise ValueError(f"unknown API error code {self.code!r}")

    @property
    def status(self) -> int:
        return CODES[self.code][0]

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid(message: str, **details: Any) -> ApiError:
    return ApiError(INVALID_ARGUMENT, message, details)


def not_found(message: str, **details: Any) -> ApiError:
    return ApiError(NOT_FOUND, message, details)


def method_not_allowed(method: str, path: str, allowed: list[str]) -> ApiError:
    """405: HTTP's answer to a method the path does not have; the entry point adds `Allow`."""
    return ApiError(METHOD_NOT_ALLOWED, f"{method} is not allowed on {path} "
                                        f"(allowed: {', '.join(allowed)})", {"allowed": allowed})
