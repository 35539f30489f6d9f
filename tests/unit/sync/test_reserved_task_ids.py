"""A task naming a document id Firestore reserves (`__x__`) is malformed (the worker
answers it 4xx once) rather than failing in the store on every retry."""

from __future__ import annotations

import pytest

from functions.sync.worker import MalformedTask, parse_task


@pytest.mark.parametrize("body", [
    b'{"subscription_id": "__x__"}', b'{"account_id": "__x__"}',
    b'{"subscription_id": "____"}', b'{"account_id": "."}',
])
def test_a_reserved_document_id_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedTask) as err:
        parse_task(body)
    assert "\n" not in str(err.value)


def test_ids_that_only_look_reserved_are_accepted() -> None:
    assert parse_task(b'{"subscription_id": "__x"}').subscription_id == "__x"
    assert parse_task(b'{"account_id": "a__b__"}').account_id == "a__b__"
