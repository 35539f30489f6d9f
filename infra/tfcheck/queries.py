"""The Firestore queries that need a composite index, as plain data.

`functions/store.py` owns the queries and exposes the same list as `QUERIES`;
a test checks the two are equal, and another that terraform/ declares one
`google_firestore_index` per entry (the emulator does not enforce indexes, so
nothing else would notice a missing one before production).

Each entry: `collection` and `fields`, the (field path, order) pairs in index
order: equality fields first, then the range/order field.
"""

from __future__ import annotations

from typing import Any

QUERIES: list[dict[str, Any]] = [
    # Renewer: channels in a state whose expiration is within the window.
    {"collection": "channels", "fields": [("state", "ASCENDING"), ("expiration", "ASCENDING")]},
    # Renewer safety net: subscriptions with a status, not synced since a cutoff.
    {"collection": "subscriptions",
     "fields": [("status", "ASCENDING"), ("last_synced_at", "ASCENDING")]},
    # Renewer sweep: subscriptions with a status whose request is pending too long.
    {"collection": "subscriptions",
     "fields": [("status", "ASCENDING"), ("requested_at", "ASCENDING")]},
]


def normalised(queries: list[dict[str, Any]]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Queries as comparable values: tuples or lists, extra keys, order of entries ignored."""
    return {
        (query["collection"], tuple((str(path), str(order)) for path, order in query["fields"]))
        for query in queries
    }
