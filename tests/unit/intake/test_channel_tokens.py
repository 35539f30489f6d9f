from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from functions.intake.channel_tokens import MAX_TOKEN_LENGTH, new_channel_id, sign, verify

OLD = {"k1": b"a" * 32}
ROTATED = {"k2": b"b" * 32, "k1": b"a" * 32}


def test_token_verifies_for_its_channel_only() -> None:
    channel = new_channel_id()
    token = sign(channel, OLD)
    assert verify(channel, token, OLD)
    assert not verify(new_channel_id(), token, OLD)
    assert len(token) <= MAX_TOKEN_LENGTH and len(channel) <= 64


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() -> None:
    channel = new_channel_id()
    old_token = sign(channel, OLD)
    assert verify(channel, old_token, ROTATED)
    new_token = sign(channel, ROTATED)
    assert new_token.split(".")[1] == "k2"
    assert verify(channel, new_token, ROTATED)
    assert not verify(channel, new_token, OLD)  # k2 unknown to the old keyring


def test_retired_key_no_longer_verifies() -> None:
    channel = new_channel_id()
    assert not verify(channel, sign(channel, OLD), {"k2": b"b" * 32})


def test_token_under_another_secret_with_the_same_key_id_fails() -> None:
    channel = new_channel_id()
    assert not verify(channel, sign(channel, {"k1": b"z" * 32}), OLD)


@given(st.one_of(st.none(), st.text(max_size=300)))
def test_arbitrary_tokens_never_verify_and_never_raise(token: str | None) -> None:
    assert not verify("channel-1", token, OLD)


@given(st.text(min_size=1, max_size=64))
def test_any_channel_id_round_trips(channel: str) -> None:
    assert verify(channel, sign(channel, ROTATED), ROTATED)
