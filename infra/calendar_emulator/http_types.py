"""The small request/response values passed between the HTTP server and the routes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request; ``segments`` are the percent-decoded path segments."""

    method: str
    segments: tuple[str, ...]
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    base_url: str

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    """An answer; ``after`` runs once the response has been written to the socket."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: tuple[tuple[str, str], ...] = ()
    after: Callable[[], None] | None = field(default=None, compare=False)


def json_response(payload: object, status: int = 200) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(payload).encode())


def raw_json_response(text: str, status: int = 200) -> Response:
    """A JSON response whose body is already serialised."""
    return Response(status, text.encode())


NO_CONTENT = Response(204, b"", content_type="")
