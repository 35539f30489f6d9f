"""The example consumer (examples/consumer.py) served on loopback, with a fake
changes route and a local OIDC key set (DESIGN.md: the Pub/Sub emulator sends no
token, so tokens are minted locally and verified against keys served here)."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


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
