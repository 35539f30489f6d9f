"""The commit-size estimate against the Firestore client's own encoding."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import document as document_pb
from google.cloud.firestore_v1.types import firestore as firestore_pb
from google.cloud.firestore_v1.types import write as write_pb

from functions.adapters.firestore import codec
from functions.model import ChangeDraft

NOW = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
PATH = "subscriptions/0123456789abcdef/events/abc123def456"
EVENT: dict[str, Any] = {
    "kind": "calendar#event", "etag": '"3181161784712000"', "id": "abc123def456",
    "status": "confirmed", "summary": "Réunion ☕", "description": "é" * 300,
    "creator": {"email": "a@example.com", "self": True}, "sequence": 0,
    "start": {"dateTime": "2031-01-01T09:00:00Z", "timeZone": "UTC"},
    "attendees": [{"email": f"person{i}@example.com", "responseStatus": "needsAction",
                   "optional": False} for i in range(200)],
    "extendedProperties": {"private": {"__x__": "1", "": "e"}, "shared": {}},
    "recurrence": [], "reminders": {"useDefault": True}, "colorId": None,
}


def _client_bytes(path: str, data: dict[str, Any]) -> int:
    """What the client sends for `set(data)` at `path`, inside a CommitRequest."""
    name = f"projects/calsync-test/databases/(default)/documents/{path}"
    write = write_pb.Write(update=document_pb.Document(
        name=name, fields=_helpers.encode_dict(data)))
    return firestore_pb.CommitRequest.pb(firestore_pb.CommitRequest(writes=[write])).ByteSize()


@pytest.mark.parametrize("resource", [
    EVENT,
    {k: v for k, v in EVENT.items() if k != "attendees"},
    {"id": "x", "description": "d" * 300_000},
    {"id": "y", "numbers": [0, 1, -1, 2**40, 1.5], "big": 2**62},
])
def test_write_size_bounds_the_request_closely(resource: dict[str, Any]):
    snapshot = codec.encode_snapshot({**resource, "_deleted": False, "_seq": 12345,
                                      "_synced_at": NOW})
    actual = _client_bytes(PATH, snapshot)
    estimate = codec.write_size(PATH, snapshot)
    assert actual <= estimate <= actual + 128
    # The storage size undercounts the request for maps of small fields.
    if "attendees" in resource:
        assert codec.document_size(PATH, snapshot) * 1.25 < actual


def test_write_size_of_a_change_entry():
    fields = {"attendees": {"before": None, "after": EVENT["attendees"]},
              "extendedProperties": {"before": None, "after": EVENT["extendedProperties"]}}
    entry = codec.encode_change(ChangeDraft("created", "abc", fields, '"1"', "series"),
                                7, NOW, NOW)
    path = "subscriptions/0123456789abcdef/changes/00000000000000000007"
    actual = _client_bytes(path, entry)
    assert actual <= codec.write_size(path, entry) <= actual + 128


def test_field_problems_escaping_cannot_fix():
    assert codec.field_problem({"a": {"b": ["c", {"d": 1}]}}) is None
    assert codec.field_problem({"p": {"k" * 1501: "v"}}) == (
        "a field name of 1501 bytes, over Firestore's 1500-byte limit")
    deep: Any = "leaf"
    for _ in range(25):
        deep = {"a": deep}
    assert codec.field_problem(deep) == "maps nested deeper than Firestore's 20 levels"
