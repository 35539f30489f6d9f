"""The example consumer (examples/consumer) served on loopback, with a fake
changes route or the real `/v1` API over the Firestore emulator, and a local
OIDC key set (DESIGN.md: the Pub/Sub emulator sends no token, so tokens are
minted locally and verified against keys served here)."""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

# The Pub/Sub emulator fixtures live beside the outbox tests; the pipeline test
# here uses them too.
from tests.integration.outbox.conftest import pubsub, pubsub_emulator_host  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[3]


class FakeFeed:
    """The API's changes route over a dict of entries, recording each request."""

    def __init__(self) -> None:
        self.entries: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, int]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        from urllib.parse import parse_qs

        parts = environ["PATH_INFO"].strip("/").split("/")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if len(parts) != 4 or parts[:2] != ["v1", "subscriptions"] or parts[3] != "changes":
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": {"code": "not_found", "message": "no route"}}']
        sub_id = parts[2]
        cursor = int(query.get("cursor", ["0"])[0])
        limit = int(query.get("limit", ["100"])[0])
        self.requests.append((sub_id, cursor))
        later = [e for e in self.entries.get(sub_id, []) if e["seq"] > cursor]
        page = later[:limit]
        body = {"changes": page, "next_cursor": page[-1]["seq"] if page else cursor,
                "has_more": len(later) > limit}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]


class KeySet:
    """An RSA key whose certificate is served like Google's v1 certs endpoint."""

    def __init__(self, kid: str = "local-1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "calsync test")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(1)
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .sign(self.key, hashes.SHA256()))
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    def certs(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({self.kid: self.cert_pem}).encode()]

    def token(self, **claims: Any) -> str:
        from google.auth import crypt, jwt

        pem = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        signer = crypt.RSASigner.from_string(pem, key_id=self.kid)
        now = int(time.time())
        payload = {"iss": "https://accounts.google.com", "iat": now, "exp": now + 600,
                   "sub": "1234", "email": "push@calsync-test.iam.gserviceaccount.com",
                   "email_verified": True, **claims}
        return jwt.encode(signer, payload).decode()


# -- the real /v1 API over the Firestore emulator ---------------------------------

class ApiOverStore:
    """The real `api` function (functions-framework's app of `main.api`, routes,
    feed, retention check, errors) over the Firestore emulator, for the read
    routes a consumer uses; writes go through `FeedWriter`. Records each request
    (`path?query`) and runs `before` / `after` hooks around it, so a test can
    hold a request or commit between two pages."""

    def __init__(self, db: Any) -> None:
        import functions_framework

        from functions.adapters.firestore.feed import FirestoreFeedStore
        from functions.adapters.firestore.views import FirestoreSubscriptionRecords
        from functions.api.feed import Feed
        from functions.api.openapi import document
        from functions.api.service import Api
        from functions.api.tokens import PageTokens
        from functions.api.views import SubscriptionViews
        from tests.unit.api.fakes import FakeCommands, FakeExchanger, FakeSealer, World

        tokens = PageTokens([b"consumer-test-key" * 2])
        unused = World()  # the write routes are not what a consumer calls
        self.api = Api(FakeCommands(unused),
                       SubscriptionViews(FirestoreSubscriptionRecords(db), tokens),
                       Feed(FirestoreFeedStore(db), tokens), FakeExchanger(unused),
                       FakeSealer(unused), document)
        self._app = functions_framework.create_app(target="api", source=str(ROOT / "main.py"))
        self.requests: list[str] = []
        self.before: list[Callable[[str], None]] = []
        self.after: list[Callable[[str], None]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = f"{environ['PATH_INFO']}?{environ.get('QUERY_STRING', '')}"
        self.requests.append(request)
        for hook in list(self.before):
            hook(request)
        body = b"".join(self._app(environ, start_response))
        for hook in list(self.after):
            hook(request)
        return [body]


@pytest.fixture
def real_api(firestore_db: Any) -> Iterator[ApiOverStore]:
    from functions import entrypoints

    saved = entrypoints._api
    api = ApiOverStore(firestore_db)
    entrypoints._api = api.api
    try:
        yield api
    finally:
        entrypoints._api = saved


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def serve_threaded() -> Iterator[Callable[[Any], str]]:
    """Like `serve`, but one thread per request (as `python -m examples.consumer` runs)."""
    servers: list[Any] = []

    def start(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer,
                             handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
