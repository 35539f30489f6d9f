"""Hypothesis fuzz of the API's inputs, in process over fakes of the ports.

5,000 derandomised requests: paths, methods, query strings, bodies and
content types, from valid shapes through near misses to noise. Not one answer
may be a 5xx, every answer is the JSON the contract describes, and every
status is documented for its operation.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.api_routes import ROUTES
from tests.unit.api.conftest import make_client
from tests.unit.api.fakes import GOOD_CODE, World
from tests.unit.api.test_openapi import assert_documented

WORLD = World()
SUB = "sub0001"
PARAM_NAMES = sorted({p.name for r in ROUTES for p in r.params}) + ["x", "", "limit[]"]

text = st.text(max_size=40)
ints = st.integers(min_value=-(2**70), max_value=2**70)
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12)
segment = st.sampled_from([SUB, "missing", "known", "..", "__x__", "a b", "%2F", ""]) | text

valid_bodies = st.sampled_from([
    {"calendar_id": "c@x.io", "owner": "o@x.io", "credentials": "dwd"},
    {"calendar_id": "primary", "oauth": {"code": GOOD_CODE, "redirect_uri": "http://h/cb"}},
    {"calendar_id": "primary", "oauth": {"code": "bad", "redirect_uri": "http://h/cb"}},
    {"full": True}, {},
])


@st.composite
def bodies(draw: Any) -> Any:
    base = draw(valid_bodies)
    how = draw(st.sampled_from(["valid", "mutated", "json", "bytes", "none"]))
    if how == "valid":
        return json.dumps(base).encode()
    if how == "mutated":
        mutated = dict(base)
        mutated[draw(st.sampled_from(list(base) + ["labels", "extra"]))] = draw(json_values)
        return json.dumps(mutated).encode()
    if how == "json":
        return json.dumps(draw(json_values)).encode()
    if how == "bytes":
        return draw(st.binary(max_size=60))
    return b""


@st.composite
def requests(draw: Any) -> tuple[str, str, bytes, str | None]:
    route = draw(st.sampled_from(ROUTES))
    path = route.path.replace("{id}", quote(draw(segment), safe=""))
    path = path.replace("{event_id}", quote(draw(segment), safe=""))
    if draw(st.booleans()):
        path = draw(st.sampled_from(["/v1", "/v1/subscriptions/", "/", "/v2/subscriptions",
                                     path + "/extra"]))
    method = draw(st.sampled_from([route.method] * 4 + ["GET", "POST", "DELETE", "PUT"]))
    params = draw(st.lists(st.tuples(
        st.sampled_from(PARAM_NAMES),
        st.sampled_from(["0", "1", "-1", "1000", "1001", "true", "created,updated",
                         "tenant:a", "start", ""]) | text | ints.map(str)), max_size=4))
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
    content_type = draw(st.sampled_from(["application/json", "application/json; charset=utf-8",
                                         "text/plain", None, "APPLICATION/JSON"]))
    return method, path + ("?" + query if query else ""), draw(bodies()), content_type


CLIENT = make_client(WORLD)
CLIENT.post("/v1/subscriptions", content_type="application/json",
            data=json.dumps({"calendar_id": "c@x.io", "owner": "o@x.io", "credentials": "dwd"}))
WORLD.entries[SUB] = 50
WORLD.oldest[SUB] = 10


@settings(max_examples=5000, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(requests())
def test_no_input_gets_a_5xx(request: tuple[str, str, bytes, str | None]) -> None:
    method, path, body, content_type = request
    answer = CLIENT.open(path, method=method, data=body, content_type=content_type)
    assert answer.status_code < 500, (method, path, body, answer.get_data(as_text=True))
    if answer.status_code == 404 and "%0A" in path.split("?")[0].upper():
        return  # the framework's own router refuses a newline in a path before calsync runs
    payload = answer.get_json()
    assert isinstance(payload, dict)
    if answer.status_code >= 400:
        assert set(payload["error"]) == {"code", "message", "details"}
    assert_documented(method, path, answer.status_code)
