"""An example consumer of calsync's Pub/Sub pushes (DESIGN.md, "Delivery (outbox)").

A plain WSGI app (`app`; run it with `python examples/consumer.py --port 8090`,
or under any WSGI server). For each push it:

- verifies, in production mode, the Google-signed OIDC token Pub/Sub puts in
  the `Authorization` header (audience = this endpoint's URL, issuer Google,
  optionally the push service account's email), with google-auth;
- de-duplicates by `(subscription_id, seq)` (delivery is at least once);
- fills a gap in `seq` (and reads a `truncated=true` marker's entry) from the
  API's changes route, `GET {CALSYNC_API_URL}/v1/subscriptions/{id}/changes?cursor=N`;
- prints one line per change, like
  `subscription 3f2…, seq 7, updated: summary 'Kick-off' → 'Kick-off (all hands)'`.

Answering 2xx acknowledges the message; any other status makes Pub/Sub
redeliver it. Settings (environment): `CALSYNC_API_URL`, `CONSUMER_MODE`
(`production` verifies tokens; `local` does not: the emulator sends none),
`CONSUMER_AUDIENCE`, `CONSUMER_PUSH_SA`, `CONSUMER_CERTS_URL` (tests only).

The first message of a subscription this process has not seen sets its
starting point (a consumer bootstraps through `GET .../events` first, which
gives the cursor to start from: pass it in `start_cursors`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")


class Rejected(Exception):
    """The request is refused; `status` is the HTTP status to answer."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def describe(sub_id: str, entry: dict[str, Any]) -> str:
    """The line printed for one change entry."""
    head = f"subscription {sub_id[:3]}…, seq {entry['seq']}, {entry['kind']}"
    fields = entry.get("fields") or {}
    if entry["kind"] == "updated":
        parts = [f"{name} {_show(change.get('before'))} → {_show(change.get('after'))}"
                 for name, change in sorted(fields.items())]
        return f"{head}: " + "; ".join(parts) if parts else head
    side = "after" if entry["kind"] == "created" else "before"
    summary = (fields.get("summary") or {}).get(side)
    return f"{head}: {_show(summary)} ({entry['event_id']})"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class ChangesClient:
    """Reads the changes route; in production with an ID token for the API."""

    def __init__(self, api_url: str, id_token: Callable[[], str] | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self._id_token = id_token

    def changes(self, sub_id: str, cursor: int, limit: int = 100) -> dict[str, Any]:
        query = urllib.parse.urlencode({"cursor": cursor, "limit": limit})
        url = (f"{self.api_url}/v1/subscriptions/{urllib.parse.quote(sub_id, safe='')}"
               f"/changes?{query}")
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self._id_token is not None:
            request.add_header("Authorization", f"Bearer {self._id_token()}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))


class Consumer:
    """The push handler's state: the last applied seq of each subscription."""

    def __init__(self, changes: ChangesClient, *, verify: bool = False, audience: str = "",
                 push_sa: str = "", certs_url: str | None = None,
                 out: Callable[[str], None] = print,
                 start_cursors: dict[str, int] | None = None) -> None:
        self._changes = changes
        self._verify = verify
        self._audience = audience
        self._push_sa = push_sa
        self._certs_url = certs_url
        self._out = out
        self.applied: dict[str, int] = dict(start_cursors or {})
        self._lock = threading.Lock()

    # -- WSGI -------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                raise Rejected("405 Method Not Allowed", "only POST is accepted")
            if self._verify:
                self.authenticate(environ.get("HTTP_AUTHORIZATION", ""))
            message = parse_push(_body(environ))
            with self._lock:
                self.handle(message)
        except Rejected as err:
            return _answer(start_response, err.status, str(err))
        except OSError as err:  # the API is unreachable: let Pub/Sub redeliver
            return _answer(start_response, "503 Service Unavailable",
                           f"changes route unavailable: {err}")
        start_response("204 No Content", [])
        return [b""]

    # -- the steps ----------------------------------------------------------------

    def authenticate(self, header: str) -> dict[str, Any]:
        """Verify Pub/Sub's OIDC token; its claims."""
        from google.auth import exceptions as auth_exceptions
        from google.auth.transport import requests as auth_requests
        from google.oauth2 import id_token

        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Rejected("401 Unauthorized", "missing bearer token")
        try:
            kwargs: dict[str, Any] = {"audience": self._audience}
            if self._certs_url:
                kwargs["certs_url"] = self._certs_url
            claims = dict(id_token.verify_token(token, auth_requests.Request(), **kwargs))
        except (ValueError, auth_exceptions.GoogleAuthError) as err:
            raise Rejected("401 Unauthorized",
                           f"invalid token: {str(err).splitlines()[0]}") from err
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Rejected("401 Unauthorized", "token not issued by Google")
        if self._push_sa and (claims.get("email") != self._push_sa
                              or not claims.get("email_verified")):
            raise Rejected("403 Forbidden", "token is not the push service account's")
        return claims

    def handle(self, message: dict[str, Any]) -> list[int]:
        """Apply one pushed entry (and any gap before it); the seqs applied."""
        attributes = message["attributes"]
        sub_id, seq = attributes["subscription_id"], int(attributes["seq"])
        last = self.applied.get(sub_id)
        if last is None:
            last = self.applied[sub_id] = seq - 1
        if seq <= last:
            return []  # a duplicate: already applied
        applied: list[int] = []
        if seq > last + 1 or attributes.get("truncated") == "true":
            # A gap (or a marker): the feed is the source of truth.
            applied += self._fill(sub_id, last, seq)
        else:
            self._apply(sub_id, message["entry"])
            applied.append(seq)
        return applied

    def _fill(self, sub_id: str, after: int, upto: int) -> list[int]:
        applied: list[int] = []
        cursor = after
        while cursor < upto:
            page = self._changes.changes(sub_id, cursor, min(upto - cursor, 1000))
            for entry in page.get("changes", []):
                if self.applied[sub_id] < int(entry["seq"]) <= upto:
                    self._apply(sub_id, entry)
                    applied.append(int(entry["seq"]))
            next_cursor = int(page.get("next_cursor", cursor))
            if next_cursor <= cursor:
                break
            cursor = next_cursor
        if self.applied[sub_id] < upto:
            # Not readable yet: answer non-2xx, so Pub/Sub redelivers this message.
            raise Rejected("503 Service Unavailable",
                           f"seq {self.applied[sub_id] + 1}..{upto} not readable yet")
        return applied

    def _apply(self, sub_id: str, entry: dict[str, Any]) -> None:
        self._out(describe(sub_id, entry))
        self.applied[sub_id] = int(entry["seq"])


def parse_push(body: bytes) -> dict[str, Any]:
    """The push envelope's message: `attributes`, `entry` (None for a marker)."""
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
    if attributes.get("truncated") != "true" and not {"kind", "event_id"} <= entry.keys():
        raise Rejected("400 Bad Request", "entry lacks kind or event_id")
    return {"attributes": attributes, "entry": entry, "id": message.get("messageId")}


def _body(environ: Environ) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as err:
        raise Rejected("400 Bad Request", "bad Content-Length") from err
    if length > 10 * 1024 * 1024:
        raise Rejected("413 Payload Too Large", "body over 10 MiB")
    return bytes(environ["wsgi.input"].read(length))


def _answer(start_response: StartResponse, status: str, reason: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [(reason.splitlines()[0] + "\n").encode()]


def from_env(environ: dict[str, str] | None = None,
             out: Callable[[str], None] = print) -> Consumer:
    env = dict(os.environ if environ is None else environ)
    api_url = env.get("CALSYNC_API_URL", "")
    production = env.get("CONSUMER_MODE", "production") == "production"
    id_token = None
    if production:
        from google.auth.transport import requests as auth_requests
        from google.oauth2 import id_token as oidc

        def id_token() -> str:
            return str(oidc.fetch_id_token(auth_requests.Request(), api_url))

    return Consumer(ChangesClient(api_url, id_token), verify=production,
                    audience=env.get("CONSUMER_AUDIENCE", ""),
                    push_sa=env.get("CONSUMER_PUSH_SA", ""),
                    certs_url=env.get("CONSUMER_CERTS_URL") or None, out=out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    from wsgiref.simple_server import make_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    consumer = from_env(out=lambda line: print(line, flush=True))
    with make_server(args.host, args.port, consumer) as server:
        print(f"consumer listening on http://{args.host}:{args.port}/", file=sys.stderr,
              flush=True)
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
