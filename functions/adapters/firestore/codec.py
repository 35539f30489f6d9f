"""How event content is stored in Firestore, and what a stored document weighs.

Google event resources may hold map keys Firestore refuses as field names
(`__x__` in `extendedProperties`, an empty key), and their nested fields would
each cost index entries. So a snapshot stores the resource under one map
field, `event`, with such keys escaped (a reversible `~` prefix), and that
field is exempt from indexing (terraform/, `catalogue.INDEX_EXEMPTIONS`). The
two fields the store queries on stay at the top level: `_deleted` and
`_recurring_event_id`. Change entries escape the keys of `fields` the same way.

`document_size` follows Firestore's storage-size rules, so a commit can be cut
to a byte budget and an oversized document named before Firestore refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from functions.model import LISTED, ChangeDraft, Snapshot

ESCAPE = "~"
_RESERVED = re.compile(r"^__.*__$", re.DOTALL)
EVENT_FIELD = "event"
RECURRING_FIELD = "_recurring_event_id"
# Firestore refuses a document larger than 1 MiB (1,048,576 bytes) as stored.
MAX_DOCUMENT_BYTES = 1_048_576
_DOCUMENT_OVERHEAD = 32


def escape_key(key: str) -> str:
    """A field name Firestore accepts, from which `unescape_key` restores `key`."""
    if key == "" or key[0] == ESCAPE or (key[0] == "_" and _RESERVED.match(key)):
        return ESCAPE + key
    return key


def unescape_key(key: str) -> str:
    return key[len(ESCAPE):] if key.startswith(ESCAPE) else key


def escape(value: Any) -> Any:
    """`value` with every map key escaped, at every depth."""
    kind = type(value)
    if kind is str:  # the common cases first: this runs for every field
        return value
    if kind is dict or isinstance(value, Mapping):
        return {escape_key(str(k)): escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape(v) for v in value]
    return value


def unescape(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {unescape_key(str(k)): unescape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unescape(v) for v in value]
    return value


def unescape_shared(value: Any) -> Any:
    """`unescape(value)`, sharing every part that holds no escaped key (reads of a
    page of entries, where nearly nothing is escaped, copy nothing)."""
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            new_key = unescape_key(key) if key.startswith(ESCAPE) else key
            new_item = unescape_shared(item)
            changed = changed or new_key is not key or new_item is not item
            out[new_key] = new_item
        return out if changed else value
    if isinstance(value, list):
        items = [unescape_shared(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def decode_change(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored change entry with its `fields` names restored."""
    decoded = {**document, "fields": unescape_shared(document.get("fields") or {})}
    if "details" in document:  # a lifecycle entry
        decoded["details"] = unescape_shared(document.get("details") or {})
    return decoded


def encode_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """The stored document for a snapshot (resource plus calsync's `_` fields)."""
    resource = {k: v for k, v in snapshot.items() if not k.startswith("_")}
    document: dict[str, Any] = {
        EVENT_FIELD: escape(resource),
        "_deleted": bool(snapshot.get("_deleted", False)),
        RECURRING_FIELD: resource.get("recurringEventId"),
    }
    for name in ("_seq", "_synced_at", LISTED):
        if name in snapshot:
            document[name] = snapshot[name]
    return document


def decode_snapshot(document: Mapping[str, Any]) -> Snapshot:
    """The snapshot a stored document holds (also reads the older flat layout)."""
    if RECURRING_FIELD not in document or not isinstance(document.get(EVENT_FIELD), Mapping):
        return dict(document)  # flat layout: the resource's fields at the top level
    snapshot: Snapshot = unescape(document[EVENT_FIELD])
    for name, value in document.items():
        if name.startswith("_") and name != RECURRING_FIELD:
            snapshot[name] = value
    return snapshot


def value_size(value: Any) -> int:
    """Bytes a value takes in Firestore's storage-size accounting."""
    if type(value) is str:
        return len(value.encode("utf-8")) + 1
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | datetime):
        return 8
    if isinstance(value, str):
        return len(value.encode("utf-8")) + 1
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, Mapping):
        return sum(len(str(k).encode("utf-8")) + 1 + value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(value_size(v) for v in value)
    return 16  # references, geo points: small


def document_size(path: str, data: Mapping[str, Any]) -> int:
    """Stored size of a document at `path` (`collection/id/...`) holding `data`."""
    name = sum(len(part.encode("utf-8")) + 1 for part in path.split("/")) + 16
    return name + value_size(dict(data)) + _DOCUMENT_OVERHEAD


def encode_change(
    change: ChangeDraft, seq: int, at: datetime, expire_at: datetime
) -> dict[str, Any]:
    """The stored document of a change entry (`fields` escaped like snapshots)."""
    return {
        "seq": seq,
        "kind": change.kind,
        "event_id": change.event_id,
        "recurring_event_id": change.recurring_event_id,
        "fields": escape(change.fields),
        "etag": change.etag,
        "at": at,
        "expire_at": expire_at,
    }


# Commit requests: what a write weighs on the wire (protobuf), which is what
# the request limits count (10 MiB in production, the emulator's 4 MiB gRPC
# message cap). It exceeds the storage size by a few bytes per field, so a map
# of many small fields (attendee lists) weighs up to ~1.4x its storage size.
_NAME_PREFIX_BYTES = 128  # "projects/{project}/databases/{database}/documents/", at most


def _varint(number: int) -> int:
    if number < 0:
        return 10
    return (number.bit_length() + 6) // 7 or 1


def _delimited(payload: int, tag: int = 1) -> int:
    return tag + (1 if payload < 0x80 else _varint(payload)) + payload


def _map_wire(mapping: Mapping[Any, Any]) -> int:
    total = 0
    for key, item in mapping.items():
        name = len((key if type(key) is str else str(key)).encode("utf-8"))
        value = _value_wire(item)
        entry = (2 + name + value + (1 if name < 0x80 else _varint(name))
                 + (1 if value < 0x80 else _varint(value)))
        total += 1 + entry + (1 if entry < 0x80 else _varint(entry))
    return total


def _value_wire(value: Any) -> int:
    """Bytes of a `google.firestore.v1.Value` message holding `value`."""
    kind = type(value)
    if kind is str:
        return _delimited(len(value.encode("utf-8")), tag=2)
    if kind is dict:
        return _delimited(_map_wire(value))
    if kind is list:
        return _delimited(sum(_delimited(_value_wire(v)) for v in value))
    if value is None or kind is bool:
        return 2
    if isinstance(value, int):
        return 1 + _varint(value)
    if isinstance(value, float):
        return 9
    if isinstance(value, datetime):
        return 14  # Timestamp{seconds, nanos}, at most
    if isinstance(value, str):
        return _delimited(len(value.encode("utf-8")), tag=2)
    if isinstance(value, bytes):
        return _delimited(len(value), tag=2)
    if isinstance(value, Mapping):
        return _delimited(_map_wire(value))
    if isinstance(value, list | tuple):
        return _delimited(sum(_delimited(_value_wire(v)) for v in value))
    return 64  # references, geo points: small


def write_size(path: str, data: Mapping[str, Any]) -> int:
    """Bytes a `set` of `data` at `path` adds to a commit request (an upper bound
    within a few hundred bytes of the client's own encoding)."""
    name = _NAME_PREFIX_BYTES + len(path.encode("utf-8"))
    document = _delimited(name) + _map_wire(data)
    return _delimited(_delimited(document))  # Write.update inside CommitRequest.writes


# Firestore's limits on field names and nesting.
MAX_FIELD_NAME_BYTES = 1500
MAX_DEPTH = 20


def field_problem(value: Any, depth: int = 0) -> str | None:
    """A limit on field names or nesting that `value` breaks, which escaping cannot
    fix: says why Firestore refused a document."""
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            return f"maps nested deeper than Firestore's {MAX_DEPTH} levels"
        for key, item in value.items():
            size = len(str(key).encode("utf-8"))
            if size > MAX_FIELD_NAME_BYTES:
                return (f"a field name of {size} bytes, over Firestore's "
                        f"{MAX_FIELD_NAME_BYTES}-byte limit")
            found = field_problem(item, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = field_problem(item, depth + 1)
            if found:
                return found
    return None
