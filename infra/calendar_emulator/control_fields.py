"""Reading control API bodies: typed fields with defaults, and choices among names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ApiError, bad_request
from .http_types import Request

if TYPE_CHECKING:
    from .app import Emulator

Handler = Callable[["Emulator", dict[str, Any], Request], object]


def field_value(body: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    """``body[name]`` checked against ``kind``; 400 when missing (no default) or mistyped."""
    value = body.get(name, default)
    if value is ...:
        raise ApiError(
            400, "required", f"Missing field {name}.", location_type="other", location=name
        )
    if value is not None and value is not default and not isinstance(value, kind):
        if kind is float and isinstance(value, int):
            return float(value)
        raise bad_request("invalid", f"Invalid value for {name}.", name)
    return value


def choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], current: str) -> str:
    """``body[name]`` (else ``current``), which must be one of ``allowed``."""
    value = field_value(body, name, str, current)
    if value not in allowed:
        raise bad_request("invalid", f"{name} must be one of {', '.join(allowed)}", name)
    return str(value)
