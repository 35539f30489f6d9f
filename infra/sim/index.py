"""An ordered index for the store's range queries, cheap to update.

Firestore answers the renewer's queries (`state == X and expiration <= T order
by expiration`, `status == active order by last_synced_at end at T`, ...) from
an index; the simulation needs the same answers in time proportional to the
rows returned, not to the number of documents, or a million subscriptions
could not be simulated. A binary heap with lazy deletion does it: `set`
pushes the new (value, id), the entry for the old value stays in the heap
and is dropped when it surfaces. A scan pops the rows it returns and pushes
them back.

Order is Firestore's: nulls first (by id), then by (value, id).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Any

_MISSING = object()


class SortedIndex:
    """Document ids ordered by one field's value."""

    def __init__(self) -> None:
        self._current: dict[str, Any] = {}
        self._values: list[tuple[Any, str]] = []
        self._nulls: list[str] = []

    def __len__(self) -> int:
        return len(self._current)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._current

    def value(self, doc_id: str) -> Any:
        return self._current.get(doc_id)

    def set(self, doc_id: str, value: Any) -> None:
        """Index `doc_id` under `value` (None: with the nulls)."""
        if self._current.get(doc_id, _MISSING) == value and doc_id in self._current:
            return
        self._current[doc_id] = value
        if value is None:
            heapq.heappush(self._nulls, doc_id)
        else:
            heapq.heappush(self._values, (value, doc_id))

    def remove(self, doc_id: str) -> None:
        self._current.pop(doc_id, None)

    def first(self) -> tuple[Any, str] | None:
        """The smallest non-null (value, id), or None."""
        rows = self.scan(None, 1, include_null=False)
        return (self._current[rows[0]], rows[0]) if rows else None

    def scan(self, upto: Any, limit: int, *, include_null: bool,
             after: str | None = None,
             start_after: tuple[Any, str] | None = None) -> list[str]:
        """Up to `limit` ids in order, values at most `upto` (None: no bound), nulls
        first when `include_null`; after the row of `after` when it is indexed, or
        after the (value, id) `start_after` as read (Firestore's `start_after` with
        the cursor's values: the row itself may have moved since)."""
        cursor: tuple[int, Any, str] | None = None
        if start_after is not None:
            value, doc_id = start_after
            cursor = (0, "", doc_id) if value is None else (1, value, doc_id)
        elif after is not None and after in self._current:
            value = self._current[after]
            cursor = (0, "", after) if value is None else (1, value, after)
        found: list[str] = []
        if include_null and (cursor is None or cursor[0] == 0):
            found = self._scan_nulls(cursor[2] if cursor else None, limit)
            cursor = None
        if len(found) < limit:
            found += self._scan_values(upto, limit - len(found),
                                       None if cursor is None else (cursor[1], cursor[2]))
        return found

    def _scan_nulls(self, after: str | None, limit: int) -> list[str]:
        popped: list[str] = []
        found: list[str] = []
        seen: set[Hashable] = set()
        heap, current = self._nulls, self._current
        while heap and len(found) < limit:
            doc_id = heapq.heappop(heap)
            if doc_id in seen or current.get(doc_id, _MISSING) is not None:
                continue  # stale (now has a value, or removed) or a duplicate: dropped
            seen.add(doc_id)
            popped.append(doc_id)
            if after is None or doc_id > after:
                found.append(doc_id)
        for doc_id in popped:
            heapq.heappush(heap, doc_id)
        return found

    def _scan_values(self, upto: Any, limit: int,
                     after: tuple[Any, str] | None) -> list[str]:
        popped: list[tuple[Any, str]] = []
        found: list[str] = []
        seen: set[str] = set()
        heap, current = self._values, self._current
        while heap and len(found) < limit:
            value, doc_id = heap[0]
            if upto is not None and value > upto:
                break
            heapq.heappop(heap)
            if doc_id in seen or current.get(doc_id, _MISSING) != value:
                continue  # stale or duplicate: dropped for good
            seen.add(doc_id)
            popped.append((value, doc_id))
            if after is None or (value, doc_id) > after:
                found.append(doc_id)
        for row in popped:
            heapq.heappush(heap, row)
        return found
