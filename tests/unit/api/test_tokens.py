"""Page tokens: opaque, bound to what they page, and still valid across a key rotation."""

from __future__ import annotations

import pytest

from functions.api.errors import ApiError
from functions.api.tokens import PageTokens


def test_round_trip_and_binding() -> None:
    tokens = PageTokens([b"k1"])
    token = tokens.encode("events", "sub\x000", {"a": 7, "l": "ev9"})
    assert "{" not in token and token.count(".") == 1  # base64url payload, then the MAC
    assert tokens.decode(token, "events", "sub\x000")["a"] == 7
    for kind, scope in (("subscriptions", "sub\x000"), ("events", "sub\x001")):
        with pytest.raises(ApiError):
            tokens.decode(token, kind, scope)


def test_tampering_is_refused() -> None:
    tokens = PageTokens([b"k1"])
    token = tokens.encode("events", "s", {"a": 7, "l": "ev9"})
    body, mac = token.split(".")
    forged = PageTokens([b"other"]).encode("events", "s", {"a": 0, "l": "ev0"})
    for bad in (body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac, forged, body,
                "", ".", "!!!.!!!", token + "x"):
        with pytest.raises(ApiError) as err:
            tokens.decode(bad, "events", "s")
        assert err.value.status == 400


def test_tokens_survive_a_key_rotation() -> None:
    old = PageTokens([b"k1"]).encode("events", "s", {"a": 1, "l": "x"})
    rotated = PageTokens([b"k2", b"k1"])  # the new key signs; the old one still verifies
    assert rotated.decode(old, "events", "s")["l"] == "x"
    with pytest.raises(ApiError):
        PageTokens([b"k2"]).decode(old, "events", "s")
