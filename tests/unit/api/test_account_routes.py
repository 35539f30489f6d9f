"""`/v1/accounts` and `?account=`, in process over fakes of the ports: answers, the policy's
validation (one-line 400s), the OAuth code path, and a fuzz of the account routes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions import entrypoints as api
from functions.errors import StoreUnavailable
from tests.unit.api.conftest import make_client
from tests.unit.api.fakes import EVENTS_ONLY_CODE, GOOD_CODE, REFRESH_TOKEN, World
from tests.unit.api.strategies import METHODS, controls, json_values, text
from tests.unit.api.test_openapi import assert_documented
from tests.unit.api.test_routes import error, post

DWD = {"owner": "ann@example.com", "credentials": "dwd"}
OAUTH = {"oauth": {"code": GOOD_CODE, "redirect_uri": "http://127.0.0.1:9/cb"}}


def test_connect_with_delegation_is_idempotent_per_owner(client: Any, world: World) -> None:
    created = post(client, "/v1/accounts", {**DWD, "policy": {"calendars": "owned"}})
    assert created.status_code == 201, created.get_data(as_text=True)
    account = created.get_json()
    assert account["credentials"] == "dwd" and account["status"] == "active"
    assert account["policy"] == {"calendars": "owned"}
    again = post(client, "/v1/accounts", {"owner": "ANN@example.com", "credentials": "dwd"})
    assert again.status_code == 200 and again.get_json()["id"] == account["id"]
    assert again.get_json()["policy"] == {"calendars": "owned"}  # no policy given: kept


def test_connect_with_a_code_seals_the_token_and_never_shows_it(
        client: Any, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    created = post(client, "/v1/accounts", OAUTH)
    assert created.status_code == 201
    assert created.get_json()["owner"] == "user@example.com"
    assert created.get_json()["credentials"] == "oauth"
    again = post(client, "/v1/accounts", OAUTH)
    assert again.status_code == 200 and world.calls[-1][0] == "reconnect"
    assert list(world.sealed.values()) == [REFRESH_TOKEN, REFRESH_TOKEN]
    text_ = created.get_data(as_text=True) + again.get_data(as_text=True)
    assert REFRESH_TOKEN not in text_ and REFRESH_TOKEN not in capsys.readouterr().out


def test_a_refused_code_seals_nothing(client: Any, world: World) -> None:
    bad = {"oauth": {"code": "reused", "redirect_uri": "http://127.0.0.1:9/cb"}}
    details = error(post(client, "/v1/accounts", bad), 400, "invalid_argument")["details"]
    assert details["reason"] == "invalid_grant" and world.sealed == {}


def test_an_account_needs_the_calendar_list_scope(client: Any, world: World) -> None:
    events_only = {"code": EVENTS_ONLY_CODE, "redirect_uri": "http://127.0.0.1:9/cb"}
    details = error(post(client, "/v1/accounts", {"oauth": events_only}), 400,
                    "invalid_argument")["details"]
    assert details["reason"] == "scope_not_granted" and world.sealed == {}
    # Enough for one calendar, though.
    created = post(client, "/v1/subscriptions", {"calendar_id": "primary",
                                                 "oauth": events_only})
    assert created.status_code == 201


def test_a_failed_connect_discards_the_sealed_token(client: Any, world: World) -> None:
    world.failure = StoreUnavailable("down")
    answer = post(client, "/v1/accounts", OAUTH)
    assert answer.status_code == 503 and world.sealed == {}


@pytest.mark.parametrize(("body", "field"), [
    ({}, ""),
    ({"credentials": "dwd"}, "owner"),
    ({**DWD, **OAUTH}, ""),
    ({**DWD, "calendar_id": "x"}, "calendar_id"),
    ({**DWD, "policy": {"calendars": "mine"}}, "policy.calendars"),
    ({**DWD, "policy": {"min_access_role": "freeBusyReader"}}, "policy.min_access_role"),
    ({**DWD, "policy": {"exclude": "a@b"}}, "policy.exclude"),
    ({**DWD, "policy": {"exclude": [""]}}, "policy.exclude[0]"),
    ({**DWD, "policy": {"exclude": ["x"] * 101}}, "policy.exclude"),
    ({**DWD, "policy": {"labels": {}}}, "policy.labels"),
    ({**DWD, "policy": []}, "policy"),
])
def test_bad_bodies_are_400_with_one_line(client: Any, body: Any, field: str) -> None:
    answer = error(post(client, "/v1/accounts", body), 400, "invalid_argument")
    assert "\n" not in answer["message"]
    assert answer["details"].get("field", "") == field or field in answer["message"]


def test_an_empty_body_is_refused(client: Any) -> None:
    error(client.post("/v1/accounts", content_type="application/json"), 400, "invalid_argument")


def test_read_list_and_delete(client: Any, world: World) -> None:
    account_id = post(client, "/v1/accounts", DWD).get_json()["id"]
    one = client.get(f"/v1/accounts/{account_id}")
    assert one.status_code == 200 and one.get_json()["calendars_followed"] == 0
    listed = client.get("/v1/accounts?limit=10").get_json()
    assert [a["id"] for a in listed["accounts"]] == [account_id]
    assert listed["next_page_token"] is None
    gone = client.delete(f"/v1/accounts/{account_id}")
    assert gone.status_code == 202 and gone.get_json()["status"] == "deleting"
    missing = error(client.get("/v1/accounts/nope"), 404, "not_found")
    assert missing["details"] == {"account_id": "nope"}
    error(client.delete("/v1/accounts/nope"), 404, "not_found")
    error(client.get("/v1/accounts?limit=101"), 400, "invalid_argument")
    error(client.put(f"/v1/accounts/{account_id}"), 405, "method_not_allowed")


def test_subscriptions_of_an_account(client: Any, world: World) -> None:
    post(client, "/v1/subscriptions", {"calendar_id": "a@x", "owner": "o@x",
                                       "credentials": "dwd"})
    post(client, "/v1/subscriptions", {"calendar_id": "b@x", "owner": "o@x",
                                       "credentials": "dwd"})
    world.subs["sub0002"]["account_id"] = "acct0001"
    found = client.get("/v1/subscriptions?account=acct0001").get_json()["subscriptions"]
    assert [s["id"] for s in found] == ["sub0002"]
    error(client.get("/v1/subscriptions?account=a%2Fb"), 400, "invalid_argument")
    error(client.get("/v1/subscriptions?account=a&account=b"), 400, "invalid_argument")


# -- fuzz ---------------------------------------------------------------------------

WORLD = World()
CLIENT = make_client(WORLD)
CLIENT.post("/v1/accounts", content_type="application/json", data=json.dumps(DWD))
FUZZED_API = api._api
ACCOUNT = "acct0001"

bodies = st.sampled_from([DWD, OAUTH, {**DWD, "policy": {"calendars": "owned",
                                                         "min_access_role": "writer",
                                                         "exclude": ["a@b", "primary"]}},
                          {"oauth": {"code": "bad", "redirect_uri": "http://h/cb"}}, {}])


@st.composite
def account_requests(draw: Any) -> tuple[str, str, bytes, str | None]:
    path = draw(st.sampled_from(["/v1/accounts", "/v1/accounts/{id}",
                                 "/v1/subscriptions?account={id}"]))
    segment = draw(st.sampled_from([ACCOUNT, "missing", "..", "__x__", "", "%2F"])
                   | text | controls)
    from urllib.parse import quote

    path = path.replace("{id}", quote(segment, safe=""))
    method = draw(st.sampled_from(["GET", "POST", "DELETE"] * 3 + METHODS))
    base = draw(bodies)
    how = draw(st.sampled_from(["valid", "mutated", "policy", "noise"]))
    if how == "mutated":
        base = {**base, draw(st.sampled_from(["owner", "credentials", "oauth", "policy", "x"])):
                draw(json_values)}
    elif how == "policy":
        base = {**DWD, "policy": {draw(st.sampled_from(["calendars", "min_access_role",
                                                        "exclude", "y"])): draw(json_values)}}
    body = (json.dumps(base).encode() if how != "noise"
            else draw(st.binary(max_size=40) | st.sampled_from([b"", b"[]", b"null"])))
    content_type = draw(st.sampled_from(["application/json", "text/plain", None]))
    return method, path, body, content_type


@settings(max_examples=1000, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(account_requests())
def test_no_account_input_gets_a_5xx(request: tuple[str, str, bytes, str | None]) -> None:
    method, path, body, content_type = request
    api._api = FUZZED_API
    answer = CLIENT.open(path, method=method, data=body, content_type=content_type)
    assert answer.status_code < 500, (method, path, body, answer.get_data(as_text=True))
    assert answer.mimetype == "application/json"
    assert_documented(method, path, answer.status_code, answer.headers.get("Allow"))
    if method != "HEAD" and answer.status_code >= 400:
        payload = answer.get_json()
        assert set(payload) == {"error"}
        assert set(payload["error"]) == {"code", "message", "details"}
