"""The feed's value helpers: unescaping that shares untouched parts, RFC 3339 times,
and the filters of a changes query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.adapters.firestore import codec
from functions.api.feed import ChangesQuery
from functions.model import rfc3339

_unescaped = codec.unescape_shared

keys = st.sampled_from(["", "a", "~a", "~", "__x__", "~~b", "id"]) | st.text(max_size=6)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(values)
def test_unescaped_equals_codec_unescape(value: Any) -> None:
    stored = codec.escape(value)
    assert _unescaped(stored) == codec.unescape(stored) == (
        [*value] if isinstance(value, tuple) else value)


def test_unescaped_shares_what_holds_no_escaped_key() -> None:
    plain = {"a": {"b": [1, {"c": 2}]}}
    assert _unescaped(plain) is plain
    mixed = {"keep": {"x": 1}, "~__p__": 1}
    out = _unescaped(mixed)
    assert out == {"keep": {"x": 1}, "__p__": 1} and out["keep"] is mixed["keep"]


def test_rfc3339_is_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 2, 5, 4, 3, 7, tzinfo=plus_two)) \
        == "2026-01-02T03:04:03.000007Z"
    assert rfc3339(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000000Z"
    assert rfc3339(None) is None and rfc3339("x") == "x"


def test_filters_pass_created_and_deleted_whatever_the_fields() -> None:
    query = ChangesQuery(fields=("start",))
    assert query.passes({"kind": "created", "fields": {}})
    assert query.passes({"kind": "deleted", "fields": {}})
    assert query.passes({"kind": "updated", "fields": {"start": {}}})
    assert not query.passes({"kind": "updated", "fields": {"end": {}}})
    only = ChangesQuery(kinds=("deleted",), fields=("start",))
    assert not only.passes({"kind": "created", "fields": {}})
