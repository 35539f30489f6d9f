"""Every route and error case of `/v1`, in process over fakes of the ports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.errors import StoreUnavailable
from tests.unit.api.fakes import GOOD_CODE, REFRESH_TOKEN, World

DWD = {"calendar_id": "team@example.com", "owner": "alice@example.com", "credentials": "dwd"}
OAUTH = {"calendar_id": "primary",
         "oauth": {"code": GOOD_CODE, "redirect_uri": "http://127.0.0.1:9/cb"}}


def post(client: Any, path: str, body: Any = None, **kw: Any) -> Any:
    if body is None:
        return client.post(path, **kw)
    return client.post(path, data=json.dumps(body), content_type="application/json", **kw)


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_subscribe_dwd_is_idempotent(client: Any) -> None:
    created = post(client, "/v1/subscriptions", {**DWD, "labels": {"tenant": "t-1"}})
    assert created.status_code == 201
    sub = created.get_json()
    assert sub["labels"] == {"tenant": "t-1"} and sub["credentials"] == "dwd"
    again = post(client, "/v1/subscriptions", DWD)
    assert again.status_code == 200 and again.get_json()["id"] == sub["id"]


def test_subscribe_oauth_seals_the_token_and_never_shows_it(
        client: Any, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    created = post(client, "/v1/subscriptions", OAUTH)
    assert created.status_code == 201
    assert created.get_json()["owner"] == "user@example.com"
    assert list(world.sealed.values()) == [REFRESH_TOKEN]
    again = post(client, "/v1/subscriptions", OAUTH)
    assert again.status_code == 200
    assert world.calls[-1][0] == "reauthorize"
    text = created.get_data(as_text=True) + again.get_data(as_text=True)
    assert REFRESH_TOKEN not in text and REFRESH_TOKEN not in capsys.readouterr().out


def test_a_refused_code_is_400_with_googles_reason(client: Any, world: World) -> None:
    bad = {**OAUTH, "oauth": {"code": "reused", "redirect_uri": "http://127.0.0.1:9/cb"}}
    details = error(post(client, "/v1/subscriptions", bad), 400, "invalid_argument")["details"]
    assert details["reason"] == "invalid_grant"
    assert world.sealed == {}


def test_subscribe_while_deleting_is_409(client: Any, world: World) -> None:
    sub_id = post(client, "/v1/subscriptions", DWD).get_json()["id"]
    assert client.delete(f"/v1/subscriptions/{sub_id}").status_code == 202
    error(post(client, "/v1/subscriptions", DWD), 409, "failed_precondition")


@pytest.mark.parametrize("body, reason", [
    ({**DWD, "extra": 1}, "unknown field"),
    ({**DWD, "owner": 5}, "must be a string"),
    ({**DWD, "credentials": "keys"}, "must be one of"),
    ({"calendar_id": "x"}, "exactly one of"),
    ({**DWD, "oauth": OAUTH["oauth"]}, "exactly one of"),
    ({"calendar_id": "x", "owner": "a@b.c"}, "required"),
    ({**DWD, "labels": {"Tenant": "x"}}, "must match"),
    ({**DWD, "labels": {"t": "UPPER"}}, "must match"),
    ({**DWD, "labels": {f"k{i}": "v" for i in range(65)}}, "more than 64"),
    ({**DWD, "labels": ["x"]}, "must be an object"),
    ({**OAUTH, "oauth": {"code": "c"}}, "required"),
    ([DWD], "JSON object"),
])
def test_invalid_bodies(client: Any, body: Any, reason: str) -> None:
    message = error(post(client, "/v1/subscriptions", body), 400, "invalid_argument")["message"]
    assert reason in message


def test_strings_firestore_cannot_store_are_refused(client: Any) -> None:
    lone = '{"calendar_id": "\\ud800", "owner": "a@b.c", "credentials": "dwd"}'
    error(client.post("/v1/subscriptions", data=lone, content_type="application/json"),
          400, "invalid_argument")
    long_id = "%C3%A9" * 600  # 600 characters, 1,200 bytes: over Firestore's id limit
    error(client.get(f"/v1/subscriptions/s1/events/{long_id}"), 400, "invalid_argument")


def test_malformed_json_and_content_types(client: Any) -> None:
    for data, content_type in [("{", "application/json"), ("NaN", "application/json"),
                               (json.dumps(DWD), "text/plain"), (json.dumps(DWD), None),
                               (b"\xff\xfe", "application/json"), ("", "application/json")]:
        response = client.post("/v1/subscriptions", data=data, content_type=content_type)
        error(response, 400, "invalid_argument")
    error(client.post("/v1/subscriptions", data="x" * 70_000, content_type="application/json"),
          400, "invalid_argument")
    ok = client.post("/v1/subscriptions", data=json.dumps(DWD),
                     content_type="application/json; charset=utf-8")
    assert ok.status_code == 201


def test_get_list_and_filters(client: Any) -> None:
    a = post(client, "/v1/subscriptions", {**DWD, "labels": {"tenant": "a", "tier": "x"}})
    post(client, "/v1/subscriptions", {**DWD, "owner": "bob@example.com",
                                       "labels": {"tenant": "b"}})
    sub_id = a.get_json()["id"]
    assert client.get(f"/v1/subscriptions/{sub_id}").get_json() == a.get_json()
    listed = client.get("/v1/subscriptions?label=tenant:a&label=tier:x").get_json()
    assert [s["id"] for s in listed["subscriptions"]] == [sub_id]
    assert listed["next_page_token"] is None
    post(client, f"/v1/subscriptions/{sub_id}/pause")
    paused = client.get("/v1/subscriptions?status=paused").get_json()["subscriptions"]
    assert [s["id"] for s in paused] == [sub_id]
    for query in ("status=gone", "label=tenant", "label=Tenant:a", "limit=0", "limit=1001",
                  "limit=x", "page_token=", "other=1", "status=active&status=paused"):
        error(client.get(f"/v1/subscriptions?{query}"), 400, "invalid_argument")


def test_lifecycle_transitions(client: Any, world: World) -> None:
    sub_id = post(client, "/v1/subscriptions", DWD).get_json()["id"]
    base = f"/v1/subscriptions/{sub_id}"
    assert post(client, base + "/pause").get_json()["status"] == "paused"
    assert post(client, base + "/pause").status_code == 200  # already paused: a no-op
    error(post(client, base + "/resync"), 409, "failed_precondition")
    assert post(client, base + "/resume").get_json()["status"] == "active"
    assert post(client, base + "/resync", {"full": True}).status_code == 202
    assert post(client, base + "/resync").status_code == 202
    assert world.calls[-2:] == [("resync", sub_id, "True"), ("resync", sub_id, "False")]
    error(post(client, base + "/resync", {"full": "yes"}), 400, "invalid_argument")
    error(post(client, base + "/resync", {"fast": True}), 400, "invalid_argument")
    error(post(client, base + "/pause", {"x": 1}), 400, "invalid_argument")
    deleted = client.delete(base)
    assert deleted.status_code == 202 and deleted.get_json()["status"] == "deleting"
    error(post(client, base + "/resume"), 409, "failed_precondition")
    del world.subs[sub_id]
    error(client.delete(base), 404, "not_found")


def test_unknown_subscription_is_404_everywhere(client: Any) -> None:
    base = "/v1/subscriptions/nope"
    for response in (client.get(base), client.delete(base), post(client, base + "/pause"),
                     post(client, base + "/resume"), post(client, base + "/resync"),
                     client.get(base + "/changes"), client.get(base + "/events"),
                     client.get(base + "/events/known")):
        error(response, 404, "not_found")


def test_changes_validation_and_expiry(client: Any, world: World) -> None:
    sub_id = post(client, "/v1/subscriptions", DWD).get_json()["id"]
    world.entries[sub_id] = 10
    base = f"/v1/subscriptions/{sub_id}/changes"
    page = client.get(base + "?cursor=2&limit=3&kinds=created,updated&fields=start,end")
    assert page.status_code == 200
    assert page.get_json()["next_cursor"] == 5 and page.get_json()["has_more"] is True
    for query in ("cursor=-1", "cursor=x", "cursor=1.5", "limit=1001", "limit=-3",
                  "kinds=moved", "kinds=", "fields=a b", "cursor=99999999999999999999",
                  "cursor=1&cursor=2"):
        error(client.get(f"{base}?{query}"), 400, "invalid_argument")
    ahead = error(client.get(base + "?cursor=11"), 400, "invalid_argument")
    assert ahead["details"]["change_seq"] == 10
    world.oldest[sub_id] = 6
    expired = error(client.get(base + "?cursor=3"), 410, "cursor_expired")
    assert expired["details"] == {"oldest_available_seq": 6}
    assert client.get(base + "?cursor=5").status_code == 200


def test_events_routes(client: Any) -> None:
    sub_id = post(client, "/v1/subscriptions", DWD).get_json()["id"]
    base = f"/v1/subscriptions/{sub_id}/events"
    assert client.get(base + "?limit=5&include_deleted=true").get_json()["as_of_seq"] == 0
    assert client.get(base + "/known").get_json()["event_id"] == "known"
    error(client.get(base + "/unknown"), 404, "not_found")
    for query in ("include_deleted=yes", "page_token=forged", "limit=0"):
        error(client.get(f"{base}?{query}"), 400, "invalid_argument")
    error(client.get(base + "/__x__"), 400, "invalid_argument")


def test_routing_errors(client: Any) -> None:
    error(client.get("/v1/nothing"), 404, "not_found")
    error(client.get("/"), 404, "not_found")
    refused = client.put("/v1/subscriptions")
    assert error(refused, 405, "method_not_allowed")["details"] == {"allowed": ["POST", "GET"]}
    assert refused.headers["Allow"] == "POST, GET"
    error(client.get("/v1/subscriptions/a%20b"), 400, "invalid_argument")
    error(client.get("/v1/subscriptions", data="{}", content_type="application/json"),
          400, "invalid_argument")


# A control character in a path segment: the two paths generated requests found
# (issue 18, item 13), then one of each kind. werkzeug's `path` converter, which
# functions-framework routes every request with, matches no newline.
CONTROL_PATHS = [
    ("POST", "/v1/subscriptions/%C3%B8%C3%A6%0A2/pause", 400),
    ("GET", "/v1/subscriptions/%C2%8F%3D%0A/events/e1", 400),
    ("GET", "/v1/subscriptions/sub0001/events/a%0Ab", 400),
    ("DELETE", "/v1/subscriptions/%0A", 400),
    ("GET", "/v1/subscriptions/a%0Db/changes", 400),
    ("GET", "/v1/subscriptions/a%00b", 400),
    ("GET", "/v1/subscriptions/sub0001/events/a%1Fb", 400),
    # DEL and C1 controls may be in an event id (only `/` and C0 are refused): unknown.
    ("GET", "/v1/subscriptions/sub0001/events/a%7Fb%C2%85", 404),
    ("GET", "/v1/nothing%0A", 404),
    ("GET", "/%0A", 404),
    ("PUT", "/v1/subscriptions/%0A", 405),
]


@pytest.mark.parametrize(("method", "path", "status"), CONTROL_PATHS)
def test_a_control_character_in_a_path_gets_the_one_error_shape(
        client: Any, method: str, path: str, status: int) -> None:
    post(client, "/v1/subscriptions", DWD)
    code = {400: "invalid_argument", 404: "not_found", 405: "method_not_allowed"}[status]
    found = error(client.open(path, method=method), status, code)
    if status == 400:
        assert found["details"]["field"] in ("id", "event_id"), found


def test_oauth_config_and_openapi(client: Any) -> None:
    config = client.get("/v1/oauth/config").get_json()
    assert config["access_type"] == "offline" and config["prompt"] == "consent"
    assert client.get("/v1/openapi.json").get_json()["openapi"] == "3.1.0"


def test_transient_failures_are_503_with_retry_after(client: Any, world: World) -> None:
    sub_id = post(client, "/v1/subscriptions", DWD).get_json()["id"]
    world.failure = StoreUnavailable("firestore unavailable")
    response = client.get(f"/v1/subscriptions/{sub_id}")
    error(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0


def test_a_bug_is_500_internal_without_its_message(client: Any, world: World) -> None:
    world.failure = RuntimeError("secret detail")
    response = client.get("/v1/subscriptions")
    assert "secret detail" not in error(response, 500, "internal")["message"]
