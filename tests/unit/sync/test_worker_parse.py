"""Task bodies the worker accepts and rejects."""

from __future__ import annotations

import pytest

from functions.sync.worker import MalformedTask, parse_task


def test_valid_body():
    assert parse_task(b'{"subscription_id": "sub-1"}').subscription_id == "sub-1"


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"{}", b'{"subscription_id": 5}', b'{"subscription_id": " "}',
    b'{"subscription_id": "a/b"}', b"\xff\xfe",
])
def test_malformed_bodies(body: bytes):
    with pytest.raises(MalformedTask) as err:
        parse_task(body)
    assert "\n" not in str(err.value)
