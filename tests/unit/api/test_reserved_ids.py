"""Ids Firestore reserves (`__x__`) or refuses (`.`, `..`) are 400 with one line in every
route that takes a subscription's or an account's id, never a 500 from the store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.api.test_routes import error, post

RESERVED = ("__x__", "____", "__a_b__")


@pytest.mark.parametrize("bad", RESERVED)
@pytest.mark.parametrize(("method", "template"), [
    ("GET", "/v1/subscriptions/{}"), ("DELETE", "/v1/subscriptions/{}"),
    ("POST", "/v1/subscriptions/{}/pause"), ("GET", "/v1/subscriptions/{}/changes"),
    ("GET", "/v1/accounts/{}"), ("DELETE", "/v1/accounts/{}"),
])
def test_a_reserved_id_is_400(client: Any, method: str, template: str, bad: str) -> None:
    path = template.format(bad)
    answer = (post(client, path, {}) if method == "POST"
              else client.open(path, method=method))
    details = error(answer, 400, "invalid_argument")["details"]
    assert details["field"] == "id", details
    assert "\n" not in answer.get_json()["error"]["message"]


def test_a_reserved_account_filter_is_400(client: Any) -> None:
    answer = client.get("/v1/subscriptions?account=__x__")
    assert error(answer, 400, "invalid_argument")["details"]["field"] == "account"


@pytest.mark.parametrize("fine", ["__x", "x__", "_x_", "a__b__", "__x__y", "__", "___"])
def test_ids_that_only_look_reserved_are_accepted(client: Any, fine: str) -> None:
    assert client.get(f"/v1/accounts/{fine}").status_code == 404
