"""The Firestore queries that need a composite index: `functions/catalogue.py`.

The store, Terraform and these checks share one catalogue (DESIGN.md,
"Apply-time facts"); this module only re-exports its QUERIES and compares
query lists. A test checks that terraform/ declares one
`google_firestore_index` per entry (the emulator does not enforce indexes,
so nothing else would notice a missing one before production).
"""

from __future__ import annotations

from typing import Any

from functions.adapters.firestore.catalogue import QUERIES

__all__ = ["QUERIES", "normalised"]


def normalised(queries: list[dict[str, Any]]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Queries as comparable values: tuples or lists, extra keys, order of entries ignored."""
    return {
        (query["collection"], tuple((str(path), str(order)) for path, order in query["fields"]))
        for query in queries
    }
