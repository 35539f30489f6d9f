"""The OpenAPI document agrees with the router and with what the handlers answer.

Fails when a route, a query parameter or an answer's status is in one and not
the other: every documented operation is routed, every documented parameter is
accepted and no other is, and every status the API gives for a set of
scenarios covering all error codes is documented for its operation.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, unquote

import pytest

from functions.api.errors import CODES
from functions.api.openapi import document
from functions.api.routes import ROUTES, match
from functions.api.schema import Bool, CommaList, Int, Str
from functions.api.service import Api
from functions.errors import StoreUnavailable
from tests.unit.api.fakes import World
from tests.unit.api.test_routes import DWD, OAUTH

DOC = document()
METHODS = ("get", "post", "put", "patch", "delete")
# Every method HTTP defines that a client can send, and one it does not define.
EVERY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                "PROPFIND")


def documented() -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, item in DOC["paths"].items()
            for method, op in item.items()}


def concrete(path: str, sub_id: str = "sub0001") -> str:
    return path.replace("{id}", sub_id).replace("{event_id}", "known")


def example(schema: Any) -> str:
    if isinstance(schema, Int):
        return str(max(schema.minimum, 1))
    if isinstance(schema, Bool):
        return "true"
    if isinstance(schema, CommaList):
        return schema.item.enum[0] if schema.item.enum else "summary"
    assert isinstance(schema, Str)
    if schema.enum:
        return schema.enum[0]
    return "tenant:a" if ":" in (schema.pattern or "") else "token"


def test_document_is_openapi_31_and_refs_resolve() -> None:
    assert DOC["openapi"] == "3.1.0"
    text = json.dumps(DOC)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        name = ref.removeprefix("#/components/schemas/")
        assert name in DOC["components"]["schemas"], ref
    for op in documented().values():
        for status, response in op["responses"].items():
            assert 200 <= int(status) < 600 and response["description"]


def test_every_route_is_documented_and_every_documented_operation_is_routed() -> None:
    assert set(documented()) == {(r.method, r.path) for r in ROUTES}
    for (method, path), op in documented().items():
        route, params = match(method, concrete(path))
        assert route.operation == op["operationId"]
        assert set(params) == {p["name"] for p in op["parameters"] if p["in"] == "path"}
        assert hasattr(Api, "_" + route.operation), route.operation


def test_documented_query_parameters_are_exactly_those_accepted(client: Any) -> None:
    client.post("/v1/subscriptions", data=json.dumps(DWD), content_type="application/json")
    for route in ROUTES:
        op = documented()[(route.method, route.path)]
        names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        assert names == {p.name for p in route.params}
        for param in route.params:
            url = f"{concrete(route.path)}?{param.name}={quote(example(param.schema))}"
            answer = client.open(url, method=route.method)
            message = (answer.get_json().get("error") or {}).get("message", "")
            assert "unknown query parameter" not in message, (url, message)
        answer = client.open(concrete(route.path) + "?undocumented=1", method=route.method)
        assert answer.status_code == 400, route.path
        assert "unknown query parameter" in answer.get_json()["error"]["message"]


def test_error_codes_are_the_documented_ones() -> None:
    for op in documented().values():
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}
    assert DOC["components"]["schemas"]["Error"]["properties"]["error"]["properties"][
        "code"]["enum"] == list(CODES)


def declared_methods(path: str) -> list[str] | None:
    """The methods the document declares for the path template `path` matches (None: no
    template), read from the document alone, not from the router."""
    for template, item in DOC["paths"].items():
        pattern = re.escape(template).replace(r"\{id\}", "[^/]+").replace(
            r"\{event_id\}", "[^/]+")
        if re.fullmatch(pattern, unquote(path.split("?", 1)[0]), flags=re.DOTALL):
            return sorted(method.upper() for method in item)
    return None


def assert_documented(method: str, path: str, status: int, allow: str | None = None) -> None:
    """The answer's status is documented for the operation that matched; a method the
    document does not declare for the path is 405 naming the declared ones in `Allow`;
    a path no template matches is 404."""
    declared = declared_methods(path)
    if declared is None:
        assert status == 404, (method, path, status)
        return
    if method not in declared:
        assert status == 405, (method, path, status)
        assert allow is not None and sorted(allow.split(", ")) == declared, (path, allow)
        return
    route, _ = match(method, path.split("?", 1)[0])
    responses = documented()[(route.method, route.path)]["responses"]
    assert str(status) in responses, (method, path, status, sorted(responses))


def scenarios(client: Any, world: World) -> list[tuple[str, str, int]]:
    """Requests that between them give every error code on every route that has it."""
    seen: list[tuple[str, str, int]] = []

    def call(method: str, path: str, body: Any = None) -> None:
        data = None if body is None else json.dumps(body)
        answer = client.open(path, method=method, data=data,
                             content_type="application/json" if data else None)
        seen.append((method, path, answer.status_code))

    call("POST", "/v1/subscriptions", DWD)
    call("POST", "/v1/subscriptions", DWD)
    call("POST", "/v1/subscriptions", OAUTH)
    sub = "sub0001"
    world.entries[sub] = 5
    for route in ROUTES:
        path = concrete(route.path, sub)
        call(route.method, path)
        call(route.method, path + "?bad=1")
        call(route.method, concrete(route.path, "missing"))
    call("GET", f"/v1/subscriptions/{sub}/changes?cursor=9")
    world.oldest[sub] = 4
    call("GET", f"/v1/subscriptions/{sub}/changes?cursor=1")
    call("POST", f"/v1/subscriptions/{sub}/pause")
    call("POST", f"/v1/subscriptions/{sub}/resync")
    call("DELETE", f"/v1/subscriptions/{sub}")
    call("POST", "/v1/subscriptions", DWD)
    call("POST", f"/v1/subscriptions/{sub}/resume")
    for failure in (StoreUnavailable("down"), RuntimeError("bug")):
        world.failure = failure
        for route in ROUTES:
            call(route.method, concrete(route.path, sub), DWD if route.body else None)
        world.failure = None
    return seen


def test_every_status_answered_is_documented(client: Any, world: World) -> None:
    seen = scenarios(client, world)
    statuses = {status for _, _, status in seen}
    assert {200, 201, 202, 400, 404, 409, 410, 500, 503} <= statuses
    for method, path, status in seen:
        assert_documented(method, path, status)


@pytest.mark.parametrize("method", EVERY_METHOD)
def test_every_method_on_every_path_is_routed_or_405_with_allow(client: Any,
                                                                method: str) -> None:
    """HTTP's answer to a method a resource does not support: 405 and `Allow`, in the
    one JSON error shape (no body for HEAD)."""
    for path in DOC["paths"]:
        declared = declared_methods(concrete(path))
        assert declared is not None
        answer = client.open(concrete(path), method=method)
        assert answer.status_code < 500, (method, path)
        if method in declared:
            assert answer.status_code != 405, (method, path)
            continue
        assert answer.status_code == 405, (method, path, answer.get_data(as_text=True))
        assert sorted(answer.headers["Allow"].split(", ")) == declared
        assert answer.mimetype == "application/json"
        if method != "HEAD":
            body = answer.get_json()
            assert body["error"]["code"] == "method_not_allowed"
            assert body["error"]["details"] == {"allowed": answer.headers["Allow"].split(", ")}
            assert method in body["error"]["message"]


def test_the_document_describes_405_and_allow() -> None:
    response = DOC["components"]["responses"]["MethodNotAllowed"]
    assert "Allow" in response["headers"]
    assert response["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert "405" in DOC["info"]["description"]
