"""Starting the consumer from its environment; it refuses to start rather than
run unsafely (no push identity, nowhere durable to keep its position)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .app import Consumer
from .auth import PushIdentity
from .feed import FeedClient
from .store import SqliteConsumerStore

INSECURE_FLAG = "CONSUMER_INSECURE_NO_AUTH"
_ON, _OFF = ("1", "true", "yes"), ("", "0", "false", "no")


class StartRefused(Exception):
    """The settings are not safe to run with; the reason says what to set."""


def from_env(environ: dict[str, str] | None = None,
             out: Callable[[str], None] = print) -> Consumer:
    """The consumer the settings describe (see the package's docstring).

    Production needs `CONSUMER_PUSH_SA` and `CONSUMER_AUDIENCE`; only
    `CONSUMER_INSECURE_NO_AUTH=1` (the local stack, whose Pub/Sub emulator sends
    no token) accepts unauthenticated pushes, and then the API is called without
    an ID token too.
    """
    env = dict(os.environ if environ is None else environ)
    insecure = _flag(env, INSECURE_FLAG)
    api_url = env.get("CALSYNC_API_URL", "")
    if not api_url:
        raise StartRefused("refusing to start: set CALSYNC_API_URL (the calsync api function's "
                           "URL, for gaps and bootstraps)")
    state_path = env.get("CONSUMER_STATE_PATH", "")
    if not state_path:
        raise StartRefused("refusing to start: set CONSUMER_STATE_PATH (the SQLite file that "
                           "keeps the position, so a restart does not skip a gap)")
    push_auth = None
    if not insecure:
        missing = [name for name in ("CONSUMER_PUSH_SA", "CONSUMER_AUDIENCE") if not env.get(name)]
        if missing:
            raise StartRefused(
                f"refusing to start: set {' and '.join(missing)} (the push subscription's "
                f"service account and audience: `terraform output pubsub`); without them any "
                f"Google-signed token would be accepted. For the local stack only: "
                f"{INSECURE_FLAG}=1")
        push_auth = PushIdentity(env["CONSUMER_AUDIENCE"], env["CONSUMER_PUSH_SA"],
                                 certs_url=env.get("CONSUMER_CERTS_URL") or None)
    else:
        print(f"consumer: INSECURE: {INSECURE_FLAG} is set: pushes are accepted without "
              f"authentication and the API is called without an ID token (local use only)",
              file=sys.stderr, flush=True)
    id_token = None if insecure else _id_token_for(api_url)
    return Consumer(FeedClient(api_url, id_token), push_auth=push_auth,
                    store=SqliteConsumerStore(state_path), out=out)


def _flag(env: dict[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise StartRefused(f"refusing to start: {name}={env[name]!r} is neither 1 nor 0")


def _id_token_for(api_url: str) -> Callable[[], str]:
    """An ID token for the API (audience = its URL), from the runtime's identity."""
    from google.auth.transport import requests as auth_requests
    from google.oauth2 import id_token as oidc

    def id_token() -> str:
        return str(oidc.fetch_id_token(auth_requests.Request(), api_url))

    return id_token


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # pushes of different subscriptions are handled side by side


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.consumer",
        description="An example consumer of calsync's Pub/Sub pushes.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        if _flag(env, INSECURE_FLAG) and not _loopback(args.host):
            raise StartRefused(f"refusing to start: {INSECURE_FLAG} listens on loopback only, "
                               f"not {args.host}")
        consumer = from_env(env, out=lambda line: print(line, flush=True))
    except StartRefused as refused:
        print(f"consumer: {refused}", file=sys.stderr, flush=True)
        return 2
    with make_server(args.host, args.port, consumer, server_class=_ThreadingServer,
                     handler_class=WSGIRequestHandler) as server:
        print(f"consumer listening on http://{args.host}:{args.port}/", file=sys.stderr,
              flush=True)
        server.serve_forever()
    return 0
