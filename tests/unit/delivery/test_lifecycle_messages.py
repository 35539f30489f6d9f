"""Lifecycle messages, field attributes and the watermark attribute (DESIGN.md,
"Accounts, lifecycle events, watermark"): pure message building."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from functions.delivery.messages import (
    FIELDS_TRUNCATED,
    MAX_ATTRIBUTES,
    entry_bytes,
    marker_for,
    message_for,
    problem,
)
from functions.model import (
    CALENDAR_ADDED,
    CALENDAR_REMOVED,
    DELETED_KIND,
    ERROR_KIND,
    REAUTHORIZATION_REQUIRED_KIND,
    RECOVERED,
    RESYNC_REQUIRED,
    Subscription,
    entry_json,
)

AT = datetime(2031, 1, 2, 9, 0, 0, tzinfo=UTC)
WATERMARK = datetime(2031, 1, 2, 8, 59, 58, 250000, tzinfo=UTC)
SUB = Subscription(id="s1", calendar_id="primary", owner="o@example.com",
                   labels={"team": "sales"})


def _lifecycle(kind: str, **details: object) -> dict[str, object]:
    return {"seq": 9, "kind": kind, "event_id": None, "recurring_event_id": None,
            "fields": {}, "details": details, "etag": None, "at": AT, "expire_at": AT}


def _updated(*names: str) -> dict[str, object]:
    return {"seq": 7, "kind": "updated", "event_id": "e1", "recurring_event_id": None,
            "fields": {name: {"before": 1, "after": 2} for name in names}, "etag": '"1"',
            "at": AT, "expire_at": AT}


@pytest.mark.parametrize(("kind", "ce_type"), [
    (REAUTHORIZATION_REQUIRED_KIND, "dev.calsync.subscription.reauthorization_required"),
    (RESYNC_REQUIRED, "dev.calsync.subscription.resync_required"),
    (ERROR_KIND, "dev.calsync.subscription.error"),
    (RECOVERED, "dev.calsync.subscription.recovered"),
    (DELETED_KIND, "dev.calsync.subscription.deleted"),
    (CALENDAR_ADDED, "dev.calsync.account.calendar_added"),
    (CALENDAR_REMOVED, "dev.calsync.account.calendar_removed"),
    ("created", "dev.calsync.event.created"),
])
def test_each_kind_has_its_cloudevents_type(kind: str, ce_type: str) -> None:
    doc = _lifecycle(kind) if kind != "created" else {**_updated(), "kind": "created"}
    assert message_for(doc, SUB, "p").attributes["ce-type"] == ce_type


def test_a_lifecycle_message_names_no_event_and_carries_its_details() -> None:
    doc = _lifecycle(ERROR_KIND, reason="calendar_not_found", message="gone")
    message = message_for(doc, SUB, "p")
    assert "event_id" not in message.attributes and "ce-subject" not in message.attributes
    assert message.attributes["kind"] == ERROR_KIND
    assert message.attributes["ce-id"] == "s1/9"
    assert message.data == entry_bytes(entry_json(doc))
    body = json.loads(message.data)
    assert body["event_id"] is None
    assert body["details"] == {"reason": "calendar_not_found", "message": "gone"}
    assert problem(message, SUB.id) is None
    marker = marker_for(doc, SUB, "p")
    assert "event_id" not in marker.attributes and marker.attributes["truncated"] == "true"


def test_an_updated_message_names_each_changed_field() -> None:
    message = message_for(_updated("start", "end", "extendedProperties"), SUB, "p")
    changed = {k: v for k, v in message.attributes.items() if k.startswith("changed_")}
    assert changed == {"changed_start": "true", "changed_end": "true",
                       "changed_extendedProperties": "true"}


def test_created_and_deleted_messages_carry_no_field_attributes() -> None:
    for kind in ("created", "deleted"):
        message = message_for({**_updated("start"), "kind": kind}, SUB, "p")
        assert not [k for k in message.attributes if k.startswith("changed_")]


def test_fields_past_the_attribute_limit_are_in_the_data_only() -> None:
    """With 64 labels (the most allowed) and the standard attributes, 40 changed
    fields do not fit: none is an attribute, `changed_fields_truncated` says so,
    the labels are all kept and the message is still valid."""
    labels = {f"l{i:02d}": "v" for i in range(64)}
    sub = Subscription(id="s1", calendar_id="primary", owner="o", labels=labels)
    names = [f"field{i:02d}" for i in range(40)]
    message = message_for(_updated(*names), sub, "p", WATERMARK)
    attributes = message.attributes
    assert attributes[FIELDS_TRUNCATED] == "true"
    assert not [k for k in attributes if k.startswith("changed_") and k != FIELDS_TRUNCATED]
    assert len([k for k in attributes if k.startswith("label_")]) == 64
    assert len(attributes) <= MAX_ATTRIBUTES
    assert problem(message, sub.id) is None
    assert sorted(json.loads(message.data)["fields"]) == names
    # Its marker keeps the same attributes and still has room for `truncated`.
    marker = marker_for(_updated(*names), sub, "p", WATERMARK)
    assert problem(marker, sub.id) is None and marker.attributes[FIELDS_TRUNCATED] == "true"


def test_fields_that_fit_exactly_are_all_attributes() -> None:
    base = len(message_for(_updated(), SUB, "p", WATERMARK).attributes)
    names = [f"f{i:02d}" for i in range(MAX_ATTRIBUTES - base)]
    attributes = message_for(_updated(*names), SUB, "p", WATERMARK).attributes
    assert len(attributes) == MAX_ATTRIBUTES and FIELDS_TRUNCATED not in attributes
    one_more = message_for(_updated(*names, "zz"), SUB, "p", WATERMARK).attributes
    assert FIELDS_TRUNCATED in one_more and "changed_f00" not in one_more


def test_a_field_name_too_long_for_an_attribute_key_truncates() -> None:
    attributes = message_for(_updated("start", "x" * 250), SUB, "p").attributes
    assert attributes[FIELDS_TRUNCATED] == "true" and "changed_start" not in attributes


def test_every_message_carries_the_watermark_it_was_built_with() -> None:
    assert message_for(_updated("start"), SUB, "p", WATERMARK).attributes[
        "complete_as_of"] == "2031-01-02T08:59:58.250000Z"
    assert message_for(_lifecycle(RECOVERED), SUB, "p", WATERMARK).attributes[
        "complete_as_of"] == "2031-01-02T08:59:58.250000Z"
    # No completed listing yet: no attribute (never an empty or made-up time).
    assert "complete_as_of" not in message_for(_updated("start"), SUB, "p").attributes
