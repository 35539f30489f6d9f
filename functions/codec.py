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

from functions.model import Snapshot

ESCAPE = "~"
_RESERVED = re.compile(r"^__.*__$", re.DOTALL)
EVENT_FIELD = "event"
RECURRING_FIELD = "_recurring_event_id"
# Firestore refuses a document larger than 1 MiB (1,048,576 bytes) as stored.
MAX_DOCUMENT_BYTES = 1_048_576
_DOCUMENT_OVERHEAD = 32


def escape_key(key: str) -> str:
    """A field name Firestore accepts, from which `unescape_key` restores `key`."""
    if key == "" or key.startswith(ESCAPE) or _RESERVED.match(key):
        return ESCAPE + key
    return key


def unescape_key(key: str) -> str:
    return key[len(ESCAPE):] if key.startswith(ESCAPE) else key


def escape(value: Any) -> Any:
    """`value` with every map key escaped, at every depth."""
    if isinstance(value, Mapping):
        return {escape_key(str(k)): escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape(v) for v in value]
    return value


def unescape(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {unescape_key(str(k)): unescape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unescape(v) for v in value]
    return value


def encode_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """The stored document for a snapshot (resource plus calsync's `_` fields)."""
    resource = {k: v for k, v in snapshot.items() if not k.startswith("_")}
    document: dict[str, Any] = {
        EVENT_FIELD: escape(resource),
        "_deleted": bool(snapshot.get("_deleted", False)),
        RECURRING_FIELD: resource.get("recurringEventId"),
    }
    for name in ("_seq", "_synced_at"):
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
