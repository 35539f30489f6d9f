"""The filter evaluator the field-filter tests use follows Pub/Sub's documented
semantics (https://cloud.google.com/pubsub/docs/subscription-message-filter), and
the filters calsync documents select what they say on calsync's messages."""

from __future__ import annotations

import pytest

from functions.delivery.messages import message_for
from functions.model import Subscription

from .pubsub_filter import FilterError, compile_filter

TIME = "attributes:changed_start OR attributes:changed_end"


@pytest.mark.parametrize(("expression", "attributes", "passes"), [
    ("attributes:domain", {"domain": ""}, True),  # present, even empty
    ("attributes:domain", {"other": "x"}, False),
    ('attributes.domain = "com"', {"domain": "com"}, True),
    ('attributes.domain = "com"', {"domain": "net"}, False),
    ('NOT attributes.domain = "com"', {}, True),  # absent: not equal
    ("-attributes:domain", {"domain": "x"}, False),
    ('hasPrefix(attributes.domain, "co")', {"domain": "com"}, True),
    ('attributes:a AND (attributes:b OR attributes:c)', {"a": "", "c": ""}, True),
    ('attributes:a AND (attributes:b OR attributes:c)', {"b": "", "c": ""}, False),
    ('attributes:"iana.org/language_tag"', {"iana.org/language_tag": "en"}, True),
])
def test_documented_semantics(expression: str, attributes: dict[str, str],
                              passes: bool) -> None:
    assert compile_filter(expression)(attributes) is passes


@pytest.mark.parametrize("expression", [
    "attributes:a AND attributes:b OR attributes:c",  # mixed without parentheses
    "attributes:" + "k" * 250,  # over 256 bytes
    "attributes:a OR",
])
def test_refused_filters(expression: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(expression)


def _attributes(kind: str, fields: dict[str, object], event_id: str | None = "e1",
                ) -> dict[str, str]:
    entry = {"seq": 7, "kind": kind, "event_id": event_id, "recurring_event_id": None,
             "fields": {name: {"before": None, "after": v} for name, v in fields.items()},
             "etag": None, "at": None, "expire_at": None}
    if event_id is None:
        entry["details"] = {}
    return message_for(entry, Subscription(id="s", calendar_id="c", owner="o"),
                       "p").attributes


def test_the_documented_filters_on_calsyncs_messages() -> None:
    time, either = compile_filter(TIME), compile_filter(TIME + " OR NOT attributes:event_id")
    fields = compile_filter('NOT attributes.kind = "updated" OR ' + TIME)
    moved = _attributes("updated", {"start": 1, "summary": "x"})
    renamed = _attributes("updated", {"summary": "x"})
    created = _attributes("created", {"start": 1, "end": 2, "summary": "x"})
    lifecycle = _attributes("resync_required", {}, event_id=None)
    assert [time(a) for a in (moved, renamed, created, lifecycle)] == [True, False, False, False]
    assert [either(a) for a in (moved, renamed, created, lifecycle)] == [True, False, False, True]
    # What the changes route's `fields=start,end` passes: created and lifecycle too.
    assert [fields(a) for a in (moved, renamed, created, lifecycle)] == [True, False, True, True]
