"""A Pub/Sub push request: its envelope parsed into the message calsync sent."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from .store import EVENT_KINDS

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
MAX_BODY_BYTES = 10 * 1024 * 1024  # Pub/Sub's message limit, plus the envelope's room


class Rejected(Exception):
    """The request is refused; `status` is the HTTP status to answer."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parse_push(body: bytes) -> dict[str, Any]:
    """The push envelope's message: `attributes`, `entry` (the decoded data), `id`.

    Only what every message has is required (`subscription_id`, `seq`, and data
    that is the entry that `seq` names, with a `kind`); `event_id` only for the
    event kinds, so a lifecycle message, or a kind a later calsync adds, is not
    refused (refusing would have Pub/Sub redeliver it until it is dead-lettered).
    """
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise Rejected("400 Bad Request", "body is not JSON") from err
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise Rejected("400 Bad Request", "no message in the push envelope")
    attributes = message.get("attributes")
    if not isinstance(attributes, dict):
        raise Rejected("400 Bad Request", "message has no attributes")
    if not isinstance(attributes.get("subscription_id"), str) or not str(
            attributes.get("seq", "")).isdigit():
        raise Rejected("400 Bad Request", "attributes subscription_id and seq are required")
    try:
        entry = json.loads(base64.b64decode(message.get("data") or "", validate=True))
    except (binascii.Error, ValueError, TypeError) as err:
        raise Rejected("400 Bad Request", "message data is not base64 JSON") from err
    if not isinstance(entry, dict) or str(entry.get("seq")) != attributes["seq"]:
        raise Rejected("400 Bad Request", "message data is not the entry its seq names")
    if attributes.get("truncated") != "true":
        if not isinstance(entry.get("kind"), str):
            raise Rejected("400 Bad Request", "entry lacks kind")
        if entry["kind"] in EVENT_KINDS and not entry.get("event_id"):
            raise Rejected("400 Bad Request", f"{entry['kind']} entry lacks event_id")
    return {"attributes": attributes, "entry": entry, "id": message.get("messageId")}


def read_body(environ: Environ) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as err:
        raise Rejected("400 Bad Request", "bad Content-Length") from err
    if length > MAX_BODY_BYTES:
        raise Rejected("413 Payload Too Large", "body over 10 MiB")
    return bytes(environ["wsgi.input"].read(length))


def answer(start_response: StartResponse, status: str, reason: str) -> list[bytes]:
    """A refusal: the status and its one-line reason as plain text."""
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [(reason.splitlines()[0] + "\n").encode()]
