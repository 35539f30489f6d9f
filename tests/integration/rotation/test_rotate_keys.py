"""`rotate-keys` against the Firestore emulator: re-sealing, and the key-use report."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions import app
from functions.adapters.firestore.credentials import CredentialVault
from functions.adapters.firestore.keys import FirestoreKeyUsage
from functions.adapters.google.sealing import key_id_of, seal
from functions.cli.main import main
from functions.errors import Misconfigured

OLD, NEW, LOST = b"o" * 32, b"n" * 32, b"l" * 32
TOKENS = {f"cred-{n}": f"rt-rotation-secret-{n}" for n in range(4)}


def _ring(**keys: bytes) -> str:
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys.items())


@pytest.fixture
def cli_env(firestore_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("CALSYNC_CHANNEL_TOKEN_KEYS", "CALSYNC_REGION", "CALSYNC_TASKS_QUEUE",
                 "CALSYNC_WORKER_URL"):
        monkeypatch.delenv(name, raising=False)  # rotate-keys needs none of them
    app.reset()
    yield firestore_db
    app.reset()


def _rotate(monkeypatch: pytest.MonkeyPatch, keyring: str, *args: str) -> tuple[int, Any]:
    monkeypatch.setenv("CALSYNC_CREDENTIAL_KEYS", keyring)
    app.reset()
    out, err = io.StringIO(), io.StringIO()
    status = main(["rotate-keys", "--json", *args], out=out, err=err)
    assert err.getvalue() == "" and "Traceback" not in out.getvalue()
    return status, json.loads(out.getvalue())


def _sealed(db: Any) -> dict[str, str]:
    return {doc.id: doc.to_dict()["sealed_refresh_token"]
            for doc in db.collection("credentials").stream()}


def test_old_tokens_open_until_resealed_then_only_the_new_key_is_needed(
    cli_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = cli_env
    before_rotation = CredentialVault(db, {"k1": OLD})
    for credential_id, token in list(TOKENS.items())[:3]:
        before_rotation.store_refresh_token(token, credential_id)
    # A fresh instance with the promoted keyring seals under k2 already.
    CredentialVault(db, {"k2": NEW, "k1": OLD}).store_refresh_token(TOKENS["cred-3"], "cred-3")

    promoted, new_only = CredentialVault(db, {"k2": NEW, "k1": OLD}), CredentialVault(
        db, {"k2": NEW})
    assert {c: promoted.refresh_token(c) for c in TOKENS} == TOKENS
    with pytest.raises(Misconfigured):  # ours, not the user's: the old key is still needed
        new_only.refresh_token("cred-0")  # the old key cannot be removed yet

    sealed = _sealed(db)
    status, dry = _rotate(monkeypatch, _ring(k2=NEW, k1=OLD), "--dry-run")
    assert status == 0 and dry["dry_run"] is True
    assert dry["credential_keys"] == {
        "current": "k2", "configured": ["k2", "k1"], "sealed_by": {"k1": 3, "k2": 1},
        "would_reseal": 3, "unopenable": [], "removable": []}
    assert _sealed(db) == sealed  # a dry run writes nothing

    status, done = _rotate(monkeypatch, _ring(k2=NEW, k1=OLD))
    assert status == 0 and done["credential_keys"]["resealed"] == 3
    assert done["credential_keys"]["sealed_by"] == {"k2": 4}
    assert done["credential_keys"]["removable"] == ["k1"]
    assert {key_id_of(value) for value in _sealed(db).values()} == {"k2"}
    assert _sealed(db)["cred-3"] == sealed["cred-3"]  # already current: untouched
    assert {c: new_only.refresh_token(c) for c in TOKENS} == TOKENS

    status, again = _rotate(monkeypatch, _ring(k2=NEW))
    assert status == 0 and again["credential_keys"]["resealed"] == 0
    assert again["credential_keys"]["removable"] == []


def test_a_token_under_a_key_already_removed_is_reported_and_left_alone(
    cli_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = cli_env
    CredentialVault(db, {"k0": LOST}).store_refresh_token("rt-lost-secret", "cred-lost")
    CredentialVault(db, {"k1": OLD}).store_refresh_token("rt-kept-secret", "cred-kept")
    lost = _sealed(db)["cred-lost"]
    status, report = _rotate(monkeypatch, _ring(k2=NEW, k1=OLD))
    assert status == 1  # something needs the operator
    creds = report["credential_keys"]
    assert creds["resealed"] == 1 and creds["sealed_by"] == {"k0": 1, "k2": 1}
    assert [u["credential_id"] for u in creds["unopenable"]] == ["cred-lost"]
    assert creds["unopenable"][0]["key_id"] == "k0"
    assert _sealed(db)["cred-lost"] == lost
    assert "secret" not in json.dumps(report)  # no token value in the report


def test_reseal_never_overwrites_a_token_stored_meanwhile(cli_env: Any) -> None:
    db = cli_env
    keyring = {"k2": NEW, "k1": OLD}
    CredentialVault(db, {"k1": OLD}).store_refresh_token("rt-first", "cred-r")
    ref = db.collection("credentials").document("cred-r")
    # Between the listing and the re-seal, the owner re-authorised under k2.
    ref.update({"sealed_refresh_token": seal("rt-second", keyring, "cred-r")})
    assert FirestoreKeyUsage(db, keyring).reseal("cred-r") is False
    assert CredentialVault(db, {"k2": NEW}).refresh_token("cred-r") == "rt-second"


def _channel(db: Any, channel_id: str, state: str, key_id: str | None,
             expires_in: timedelta = timedelta(days=3)) -> None:
    data: dict[str, Any] = {"sub_id": "sub-1", "state": state, "resource_id": "r",
                            "expiration": datetime.now(UTC) + expires_in}
    if key_id is not None:
        data["token_key_id"] = key_id
    db.collection("channels").document(channel_id).set(data)


def test_channel_key_report_counts_only_channels_that_can_still_deliver(
    cli_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = cli_env
    _channel(db, "a", "active", "k2")
    _channel(db, "b", "pending", "k2")
    _channel(db, "c", "replaced", "k1")  # still delivers until it expires
    _channel(db, "d", "stopped", "k0")
    _channel(db, "e", "active", "k0", expires_in=-timedelta(minutes=1))  # expired
    _channel(db, "f", "active", None)  # written before channels recorded their key
    keyring = _ring(k2=NEW)
    status, report = _rotate(monkeypatch, keyring, "--channel-key-ids", "k2,k1,k0")
    assert status == 0
    assert report["channel_token_keys"] == {"in_use": {"k1": 1, "k2": 2}, "unknown": 1,
                                            "configured": ["k2", "k1", "k0"],
                                            "removable": []}
    db.collection("channels").document("f").update({"state": "stopped"})
    assert _rotate(monkeypatch, keyring, "--channel-key-ids", "k2,k1,k0")[1][
        "channel_token_keys"]["removable"] == ["k0"]
    db.collection("channels").document("c").update({"state": "stopped"})
    monkeypatch.setenv("CALSYNC_CHANNEL_TOKEN_KEYS", _ring(k2=NEW, k1=OLD))  # ids read only
    report = _rotate(monkeypatch, keyring)[1]["channel_token_keys"]
    assert report["configured"] == ["k2", "k1"] and report["removable"] == ["k1"]
    monkeypatch.delenv("CALSYNC_CHANNEL_TOKEN_KEYS")
    assert _rotate(monkeypatch, keyring)[1]["channel_token_keys"]["removable"] is None


def test_the_text_report_says_what_can_be_removed(cli_env: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    CredentialVault(cli_env, {"k1": OLD}).store_refresh_token("rt-text-secret", "cred-t")
    monkeypatch.setenv("CALSYNC_CREDENTIAL_KEYS", _ring(k2=NEW, k1=OLD))
    app.reset()
    out = io.StringIO()
    assert main(["rotate-keys", "--channel-key-ids", "k2,k1"], out=out) == 0
    text = out.getvalue()
    assert "re-sealed 1 under current key k2" in text
    assert "credential keys removable now: k1" in text
    assert "channel-token keys removable now: k1" in text
    assert "rt-text-secret" not in text
