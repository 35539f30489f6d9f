"""Where the consumer keeps its position: per subscription, the last applied
`seq` and the app's copy of the events, changed together or not at all.

`ConsumerStore` is the interface a real application backs with its own
database (the same transaction that applies a change moves the position, so a
crash never applies twice nor skips); `SqliteConsumerStore` is the example's,
on the standard library's `sqlite3`: durable only on a disk that outlives the
process (not a Cloud Run instance's, whose files live in memory).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Resource = dict[str, Any]  # Google's event resource, as the API shows it

# The kinds this consumer applies to its copy of the events.
EVENT_KINDS = frozenset({"created", "updated", "deleted"})
# Lifecycle entries it acts on (DESIGN.md, "Accounts, lifecycle events, watermark"):
# the subscription's health is kept with the position, in the same transaction; a
# deletion drops the copy. `resync_required` bootstraps again (the app does that:
# it reads the API). Any other kind (kinds a later calsync adds) only moves the
# position: consumers ignore kinds they do not know.
ERROR_KINDS = frozenset({"error", "reauthorization_required"})
RECOVERED = "recovered"
SUBSCRIPTION_DELETED = "subscription_deleted"
RESYNC_REQUIRED = "resync_required"
ACCOUNT_KINDS = frozenset({"calendar_added", "calendar_removed"})
KNOWN_KINDS = (EVENT_KINDS | ERROR_KINDS | ACCOUNT_KINDS
               | {RECOVERED, SUBSCRIPTION_DELETED, RESYNC_REQUIRED})


class ConsumerStore(ABC):
    """The consumer's durable state, one position per subscription."""

    @abstractmethod
    def position(self, sub_id: str) -> int:
        """The last `seq` applied; 0 for a subscription never seen."""

    @abstractmethod
    def apply(self, sub_id: str, after: int, entries: Sequence[dict[str, Any]]) -> bool:
        """Apply dense entries `after+1 ..` to the copy and move the position to
        the last one, in one transaction; False (nothing changed) if the
        position is no longer `after` (another worker moved it). Lifecycle
        entries change the subscription's health (`error`,
        `reauthorization_required`, `recovered`) or drop the copy
        (`subscription_deleted`)."""

    @abstractmethod
    def replace(self, sub_id: str, after: int, events: Mapping[str, Resource],
                as_of_seq: int) -> bool:
        """A bootstrap: the copy becomes `events` and the position `as_of_seq`,
        in one transaction; False if the position is no longer `after`."""

    @abstractmethod
    def events(self, sub_id: str) -> dict[str, Resource]:
        """The app's copy of the subscription's events, by event id."""

    def health(self, sub_id: str) -> tuple[str, str | None]:
        """The subscription's health as its lifecycle entries told it: (`active` |
        `error` | `reauthorization_required` | `deleted`, the reason)."""
        return "active", None

    def seed(self, sub_id: str, position: int) -> None:
        """Start a subscription never seen at `position` (a bootstrap done elsewhere)."""
        if self.position(sub_id) == 0 and position > 0:
            self.replace(sub_id, 0, self.events(sub_id), position)


def fold(current: Resource | None, entry: Mapping[str, Any]) -> Resource | None:
    """An event's copy after one change entry; None once deleted.

    Entries carry the full `after` value of each field they change, so applying
    one again is harmless (DESIGN.md, "Bootstrap"); an `updated` entry for an
    event not held starts from an empty record (it was deleted before its
    bootstrap page was read, and its `deleted` entry follows).
    """
    kind = entry.get("kind")
    fields: Mapping[str, Any] = entry.get("fields") or {}
    if kind == "deleted":
        return None
    if kind == "created":
        return {name: change.get("after") for name, change in fields.items()
                if change.get("after") is not None}
    resource = dict(current or {})
    for name, change in fields.items():
        if change.get("after") is None:
            resource.pop(name, None)
        else:
            resource[name] = change["after"]
    return resource


_SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    subscription_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    subscription_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (subscription_id, event_id)
);
CREATE TABLE IF NOT EXISTS health (
    subscription_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    reason TEXT
);
"""


class SqliteConsumerStore(ConsumerStore):
    """`ConsumerStore` in one SQLite file (`:memory:` for a throwaway one).

    One connection, used under a lock held only for local SQLite work, never
    across a network call; each change is an immediate transaction, so several
    processes may share the file (the position check keeps them apart).
    """

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def position(self, sub_id: str) -> int:
        with self._lock:
            return self._position(sub_id)

    def _position(self, sub_id: str) -> int:
        row = self._db.execute("SELECT seq FROM positions WHERE subscription_id = ?",
                               (sub_id,)).fetchone()
        return int(row[0]) if row else 0

    def apply(self, sub_id: str, after: int, entries: Sequence[dict[str, Any]]) -> bool:
        with self._transaction():
            if self._position(sub_id) != after:
                return False
            for entry in entries:
                kind = entry.get("kind")
                if kind in EVENT_KINDS:
                    self._put(sub_id, str(entry["event_id"]),
                              fold(self._event(sub_id, str(entry["event_id"])), entry))
                elif kind in ERROR_KINDS:
                    self._health(sub_id, str(kind), (entry.get("details") or {}).get("reason"))
                elif kind == RECOVERED:
                    self._health(sub_id, "active", None)
                elif kind == SUBSCRIPTION_DELETED:
                    self._db.execute("DELETE FROM events WHERE subscription_id = ?", (sub_id,))
                    self._health(sub_id, "deleted", None)
                after = int(entry["seq"])
            self._move(sub_id, after)
            return True

    def replace(self, sub_id: str, after: int, events: Mapping[str, Resource],
                as_of_seq: int) -> bool:
        with self._transaction():
            if self._position(sub_id) != after:
                return False
            self._db.execute("DELETE FROM events WHERE subscription_id = ?", (sub_id,))
            for event_id, resource in events.items():
                self._put(sub_id, event_id, resource)
            self._move(sub_id, as_of_seq)
            return True

    def events(self, sub_id: str) -> dict[str, Resource]:
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, resource FROM events WHERE subscription_id = ?"
                " ORDER BY event_id", (sub_id,)).fetchall()
        return {str(event_id): json.loads(resource) for event_id, resource in rows}

    def event(self, sub_id: str, event_id: str) -> Resource | None:
        with self._lock:
            return self._event(sub_id, event_id)

    def health(self, sub_id: str) -> tuple[str, str | None]:
        with self._lock:
            row = self._db.execute("SELECT status, reason FROM health WHERE subscription_id = ?",
                                   (sub_id,)).fetchone()
        return (str(row[0]), row[1]) if row else ("active", None)

    # -- inside a transaction ------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """`BEGIN IMMEDIATE` .. `COMMIT` (`ROLLBACK` on an exception), under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _event(self, sub_id: str, event_id: str) -> Resource | None:
        row = self._db.execute(
            "SELECT resource FROM events WHERE subscription_id = ? AND event_id = ?",
            (sub_id, event_id)).fetchone()
        return dict(json.loads(row[0])) if row else None

    def _put(self, sub_id: str, event_id: str, resource: Resource | None) -> None:
        if resource is None:
            self._db.execute("DELETE FROM events WHERE subscription_id = ? AND event_id = ?",
                             (sub_id, event_id))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO events (subscription_id, event_id, resource)"
                " VALUES (?, ?, ?)", (sub_id, event_id, json.dumps(resource, sort_keys=True)))

    def _health(self, sub_id: str, status: str, reason: str | None) -> None:
        self._db.execute(
            "INSERT INTO health (subscription_id, status, reason) VALUES (?, ?, ?)"
            " ON CONFLICT (subscription_id) DO UPDATE SET status = excluded.status,"
            " reason = excluded.reason", (sub_id, status, reason))

    def _move(self, sub_id: str, seq: int) -> None:
        self._db.execute(
            "INSERT INTO positions (subscription_id, seq) VALUES (?, ?)"
            " ON CONFLICT (subscription_id) DO UPDATE SET seq = excluded.seq", (sub_id, seq))
