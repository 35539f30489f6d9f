"""Both credential kinds refresh for real against the Calendar emulator's /token."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.transport.requests import Request

from functions.adapters.firestore.credentials import CredentialVault
from functions.adapters.google.credentials import GoogleCredentialsProvider
from functions.config import Settings
from functions.errors import CredentialsRejected, Misconfigured
from functions.model import Subscription

KEYS = {"v1": b"c" * 32}


def _settings(calendar: Any, **extra: str) -> Settings:
    return Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": "calsync-test", "CALSYNC_REGION": "local",
        "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
        "CALSYNC_CHANNEL_TOKEN_KEYS": "k:" + base64.b64encode(b"t" * 32).decode(),
        "CALSYNC_CREDENTIAL_KEYS": "v1:" + base64.b64encode(KEYS["v1"]).decode(),
        "CALSYNC_OAUTH_CLIENT_ID": "client-1", "CALSYNC_OAUTH_CLIENT_SECRET": "shh",
        "CALSYNC_OAUTH_TOKEN_URI": calendar.token_uri,
        "CALENDAR_API_ENDPOINT": calendar.api_endpoint, **extra,
    })


def test_domain_wide_delegation_acts_as_the_owner(calendar: Any, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    key_file = tmp_path / "delegation.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "calsync-test", "private_key_id": "k1",
        "private_key": pem, "client_email": "dwd@calsync-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": calendar.token_uri,
    }))
    provider = GoogleCredentialsProvider(
        _settings(calendar, CALSYNC_DELEGATION_KEY_FILE=str(key_file)), vault=None)
    creds = provider.credentials_for(Subscription("s", "primary", "dana@example.com",
                                                  credentials_ref="dwd"))
    creds.refresh(Request())
    assert creds.token == "dana@example.com"  # the emulator's access token is the user


def test_sealed_refresh_token_refreshes_and_invalid_grant_is_rejected(
    calendar: Any, firestore_db: Any
) -> None:
    calendar.control.register_refresh_token("rt-dana", "dana@example.com")
    vault = CredentialVault(firestore_db, KEYS)
    ref = vault.store_refresh_token("rt-dana")
    provider = GoogleCredentialsProvider(_settings(calendar), vault)
    sub = Subscription("s", "primary", "dana@example.com", credentials_ref=ref)
    creds = provider.credentials_for(sub)
    creds.refresh(Request())
    assert creds.token == "dana@example.com"

    from functions.adapters.google.calendar import GoogleCalendar

    calendar.control.set_invalid_grant("dana@example.com")
    port = GoogleCalendar(provider, api_endpoint=calendar.api_endpoint)
    with pytest.raises(CredentialsRejected) as info:
        port.list_page(sub, sync_token=None, page_token=None, page_size=10)
    assert "rt-dana" not in str(info.value)


def test_unknown_credentials_reference_is_rejected(calendar: Any) -> None:
    provider = GoogleCredentialsProvider(_settings(calendar), vault=None)
    with pytest.raises(CredentialsRejected):
        provider.credentials_for(Subscription("s", "primary", "x", credentials_ref="magic"))
    with pytest.raises(Misconfigured, match="OAuth is not configured"):
        provider.credentials_for(Subscription("s", "primary", "x", credentials_ref="oauth:1"))
