"""Messages and Pub/Sub's limits, checked before sending (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from functions.delivery.messages import (
    MAX_VALUE_BYTES,
    entry_bytes,
    marker_for,
    message_for,
    problem,
)
from functions.model import Subscription, entry_json
from functions.ports import OutMessage

AT = datetime(2031, 1, 2, 9, 0, 0, tzinfo=UTC)
SUB = Subscription(id="s1", calendar_id="primary", owner="o@example.com",
                   labels={"team": "sales", "tier": "gold"})


def _doc(event_id: str = "e1", **fields: dict[str, object]) -> dict[str, object]:
    return {"seq": 7, "kind": "updated", "event_id": event_id, "recurring_event_id": None,
            "fields": fields or {"summary": {"before": "a", "after": "b"}}, "etag": '"1"',
            "at": AT, "expire_at": AT}


def test_the_body_is_the_entry_as_the_api_prints_it() -> None:
    doc = _doc(summary={"before": "Café", "after": "Zürich"},
               end={"before": {"timeZone": "UTC", "dateTime": "x"}, "after": None})
    message = message_for(doc, SUB, "p")
    assert message.data == entry_bytes(entry_json(doc))
    assert b"\\u00e9" in message.data  # escaped, like the api function's bodies
    assert json.loads(message.data)["at"] == "2031-01-02T09:00:00.000000Z"
    assert list(json.loads(message.data)["fields"]) == ["end", "summary"]  # one order
    assert message.attributes["label_team"] == "sales"
    assert problem(message, SUB.id) is None


def test_an_event_id_over_the_attribute_limit_is_named_and_its_marker_fits() -> None:
    long_id = "é" * 600  # 1,200 bytes: over 1,024 though 600 characters
    message = message_for(_doc(long_id), SUB, "p")
    assert "1200 bytes, over 1024" in (problem(message, SUB.id) or "")
    marker = marker_for(_doc(long_id), SUB, "p")
    assert problem(marker, SUB.id) is None
    assert marker.attributes["truncated"] == "true"
    assert {k: v for k, v in marker.attributes.items() if k.startswith("label_")} == {
        "label_team": "sales", "label_tier": "gold"}
    subject = marker.attributes["ce-subject"]
    assert len(subject.encode()) <= MAX_VALUE_BYTES and long_id.startswith(subject)
    assert json.loads(marker.data) == {"seq": 7, "kind": "updated", "event_id": long_id,
                                       "truncated": True}


@pytest.mark.parametrize(("attributes", "data", "why"), [
    ({f"a{i}": "v" for i in range(101)}, b"{}", "101 attributes, over Pub/Sub's 100"),
    ({"k" * 257: "v"}, b"{}", "is 257 bytes, over 256"),
    ({"k": "v" * 1025}, b"{}", "is 1025 bytes, over 1024"),
    ({"k": "v"}, b"x" * 10_000_000, "over Pub/Sub's 10000000"),
])
def test_each_limit_is_checked(attributes: dict[str, str], data: bytes, why: str) -> None:
    assert why in (problem(OutMessage(data, attributes), "s1") or "")


def test_at_the_limits_a_message_passes() -> None:
    attributes = {f"a{i}": "v" for i in range(99)} | {"k" * 256: "v" * 1024}
    assert problem(OutMessage(b"x" * 1000, attributes), "s1") is None
