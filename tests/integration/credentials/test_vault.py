"""Sealed refresh tokens in the real Firestore emulator."""

from __future__ import annotations

from typing import Any

import pytest

from functions.adapters.firestore.credentials import CREDENTIALS_COLLECTION, CredentialVault
from functions.adapters.google.sealing import key_id_of
from functions.errors import CredentialsRejected, Misconfigured

OLD = {"v1": b"o" * 32}
ROTATED = {"v2": b"n" * 32, "v1": b"o" * 32}


def test_refresh_token_is_stored_sealed_and_reads_back(firestore_db: Any) -> None:
    vault = CredentialVault(firestore_db, OLD)
    ref = vault.store_refresh_token("1//secret-refresh", "cred-a")
    assert ref == "oauth:cred-a"
    raw = firestore_db.collection(CREDENTIALS_COLLECTION).document("cred-a").get().to_dict()
    assert "secret-refresh" not in str(raw)
    assert vault.refresh_token("cred-a") == "1//secret-refresh"


def test_key_rotation_old_tokens_decrypt_and_reseal_moves_them(firestore_db: Any) -> None:
    CredentialVault(firestore_db, OLD).store_refresh_token("rt-old", "cred-b")
    rotated = CredentialVault(firestore_db, ROTATED)
    assert rotated.refresh_token("cred-b") == "rt-old"
    assert rotated.reseal("cred-b") is True
    assert rotated.reseal("cred-b") is False
    raw = firestore_db.collection(CREDENTIALS_COLLECTION).document("cred-b").get().to_dict()
    assert key_id_of(raw["sealed_refresh_token"]) == "v2"
    assert CredentialVault(firestore_db, {"v2": b"n" * 32}).refresh_token("cred-b") == "rt-old"


def test_missing_credentials_are_the_users_and_a_missing_key_is_ours(firestore_db: Any) -> None:
    vault = CredentialVault(firestore_db, OLD)
    with pytest.raises(CredentialsRejected, match="not found"):
        vault.refresh_token("absent")
    CredentialVault(firestore_db, {"v0": b"x" * 32}).store_refresh_token("rt", "cred-c")
    with pytest.raises(Misconfigured, match="'v0'") as info:
        vault.refresh_token("cred-c")
    assert "rt" not in str(info.value).replace("cred-c", "")
