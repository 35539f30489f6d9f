"""Hypothesis strategies for API requests: valid shapes, near misses and noise.

Every strategy object is built once, at import or once per subscription id:
building one inside a `@composite` draw makes hypothesis validate it anew on
every example, which cost more than the request it drew (the same draws either way).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from functions.api.routes import ROUTES
from tests.unit.api.fakes import GOOD_CODE

PARAM_NAMES = sorted({p.name for r in ROUTES for p in r.params}) + ["x", "", "limit[]"]

text = st.text(max_size=40)
ints = st.integers(min_value=-(2**70), max_value=2**70)
json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12)


# Every C0 control, DEL and the C1 controls, mixed with the characters around them.
controls = st.text(st.characters(min_codepoint=0, max_codepoint=0x9F) | st.sampled_from("øæ="),
                   min_size=1, max_size=12)
# Every method HTTP defines that a client can send, and one it does not define.
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"]


@functools.cache
def segments(sub_id: str) -> Any:
    return (st.sampled_from([sub_id, "missing", "known", "..", "__x__", "a b", "%2F", "",
                             "øæ\n2", "\x8f=\n", f"{sub_id}\n", "\r\n"])
            | text | controls)


valid_bodies = st.sampled_from([
    {"calendar_id": "c@x.io", "owner": "o@x.io", "credentials": "dwd"},
    {"calendar_id": "primary", "oauth": {"code": GOOD_CODE, "redirect_uri": "http://h/cb"}},
    {"calendar_id": "primary", "oauth": {"code": "bad", "redirect_uri": "http://h/cb"}},
    {"full": True}, {},
])


body_kinds = st.sampled_from(["valid", "mutated", "json", "bytes", "none"])
mutated_fields = {json.dumps(base): st.sampled_from(list(base) + ["labels", "extra"])
                  for base in valid_bodies.elements}
raw_bodies = st.binary(max_size=60) | st.sampled_from([
    b'{"calendar_id": "\\ud800", "owner": "a@b.c", "credentials": "dwd"}',
    b'{"calendar_id": "x", "labels": {"\\udfff": "v"}, "owner": "a@b.c", '
    b'"credentials": "dwd"}', b"[" * 5000, b'{"full": 1e999}'])


@st.composite
def bodies(draw: Any) -> Any:
    base = draw(valid_bodies)
    how = draw(body_kinds)
    if how == "valid":
        return json.dumps(base).encode()
    if how == "mutated":
        mutated = dict(base)
        mutated[draw(mutated_fields[json.dumps(base)])] = draw(json_values)
        return json.dumps(mutated).encode()
    if how == "json":
        return json.dumps(draw(json_values)).encode()
    if how == "bytes":
        return draw(raw_bodies)
    return b""


body_strategy = bodies()
routes = st.sampled_from(ROUTES)
# A path outside the routes instead of the route's own; None: the route's path + "/extra".
elsewhere = st.sampled_from(["/v1", "/v1/subscriptions/", "/", "/v2/subscriptions", None])
methods = {route.method: st.sampled_from([route.method] * 4 + METHODS) for route in ROUTES}
query_params = st.lists(st.tuples(
    st.sampled_from(PARAM_NAMES),
    st.sampled_from(["0", "1", "-1", "1000", "1001", "true", "created,updated",
                     "tenant:a", "start", ""]) | text | ints.map(str)), max_size=4)
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "text/plain", None, "APPLICATION/JSON"])


@st.composite
def requests(draw: Any, sub_id: str) -> tuple[str, str, bytes, str | None]:
    route = draw(routes)
    path = route.path.replace("{id}", quote(draw(segments(sub_id)), safe=""))
    path = path.replace("{event_id}", quote(draw(segments(sub_id)), safe=""))
    if draw(st.booleans()):
        path = draw(elsewhere) or path + "/extra"
    method = draw(methods[route.method])
    params = draw(query_params)
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
    content_type = draw(content_types)
    return method, path + ("?" + query if query else ""), draw(body_strategy), content_type
