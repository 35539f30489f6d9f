from __future__ import annotations

import pytest

from functions.adapters.google.sealing import key_id_of, seal, unseal
from functions.errors import SealError

OLD = {"v1": b"o" * 32}
ROTATED = {"v2": b"n" * 32, "v1": b"o" * 32}


def test_round_trip_and_ciphertext_hides_the_token() -> None:
    sealed = seal("1//refresh-token-value", OLD, "cred-1")
    assert "refresh-token-value" not in sealed
    assert unseal(sealed, OLD, "cred-1") == "1//refresh-token-value"
    assert seal("x", OLD, "c") != seal("x", OLD, "c")  # fresh nonce each time


def test_old_key_version_still_opens_after_rotation() -> None:
    sealed = seal("token", OLD, "cred-1")
    assert unseal(sealed, ROTATED, "cred-1") == "token"
    assert key_id_of(seal("token", ROTATED, "cred-1")) == "v2"


def test_retired_key_is_named_in_the_error() -> None:
    sealed = seal("token", OLD, "cred-1")
    with pytest.raises(SealError, match="'v1'"):
        unseal(sealed, {"v2": b"n" * 32}, "cred-1")


@pytest.mark.parametrize("mutate", [
    lambda s: s[:-4] + ("AAAA" if not s.endswith("AAAA") else "BBBB"),
    lambda s: "v9" + s[2:],
    lambda s: "garbage",
    lambda s: s.replace(".", "", 1),
])
def test_tampered_or_malformed_values_do_not_open(mutate) -> None:  # type: ignore[no-untyped-def]
    sealed = seal("token", OLD, "cred-1")
    with pytest.raises(SealError):
        unseal(mutate(sealed), OLD, "cred-1")


def test_value_sealed_for_one_credential_cannot_be_moved_to_another() -> None:
    sealed = seal("token", OLD, "cred-1")
    with pytest.raises(SealError):
        unseal(sealed, OLD, "cred-2")


def test_errors_never_contain_the_secret() -> None:
    sealed = seal("super-secret-refresh", OLD, "cred-1")
    with pytest.raises(SealError) as info:
        unseal(sealed, OLD, "other")
    assert "super-secret" not in str(info.value)
