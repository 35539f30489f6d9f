"""Deciding what a page of `events.list` changes: pure logic, no I/O.

Each page is diffed against the stored snapshots overlaid with the decisions
already taken for this page, so an event id gets at most one change entry per
page commit: its stored version against its final version on the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from functions.model import (
    CREATED,
    DELETED,
    UPDATED,
    ChangeDraft,
    Event,
    EventWrite,
    Snapshot,
)
from functions.sync.diff import diff_fields

CANCELLED = "cancelled"


def is_cancelled(event: Event) -> bool:
    """Google reports deletions (and cancelled instances) as `cancelled` items."""
    return event.get("status") == CANCELLED


def is_live(snapshot: Snapshot | None) -> bool:
    """Whether a stored snapshot stands for an existing event."""
    return snapshot is not None and not snapshot.get("_deleted", False)


def deleted_series_ids(items: Iterable[Event], stored: Mapping[str, Snapshot | None]) -> list[str]:
    """Ids of recurring series that this page deletes and whose exceptions we may hold."""
    found = []
    for item in items:
        if not is_cancelled(item) or item.get("recurringEventId"):
            continue
        snapshot = stored.get(item["id"])
        if is_live(snapshot) and snapshot and snapshot.get("recurrence"):
            found.append(item["id"])
    return found


def plan_page(
    items: Iterable[Event],
    stored: Mapping[str, Snapshot | None],
    exceptions: Mapping[str, Iterable[str]],
    *,
    first_sync: bool,
) -> list[EventWrite]:
    """The writes a page needs, in first-seen order.

    `stored` maps every id on the page (and every id in `exceptions`) to its
    snapshot or None; `exceptions` maps a series being deleted to the ids of
    its stored exceptions, which are deleted with it.
    """
    working: dict[str, Snapshot] = {}
    for item in items:
        event_id = item["id"]
        snapshot: Snapshot = dict(item)
        snapshot["_deleted"] = is_cancelled(item)
        if snapshot["_deleted"]:
            for exception_id in exceptions.get(event_id, ()):
                current = working.get(exception_id, stored.get(exception_id))
                if is_live(current) and current is not None:
                    working[exception_id] = {**current, "_deleted": True}
        working[event_id] = snapshot
    writes = []
    for event_id, final in working.items():
        write = decide(event_id, stored.get(event_id), final, first_sync=first_sync)
        if write is not None:
            writes.append(write)
    return writes


def plan_reconciliation(unlisted: Mapping[str, Snapshot]) -> list[EventWrite]:
    """Deletions for stored snapshots that a full listing no longer returns."""
    writes = []
    for event_id, snapshot in unlisted.items():
        if is_live(snapshot):
            write = decide(event_id, snapshot, {**snapshot, "_deleted": True}, first_sync=False)
            if write is not None:
                writes.append(write)
    return writes


def decide(
    event_id: str, before: Snapshot | None, after: Snapshot, *, first_sync: bool
) -> EventWrite | None:
    """The write (and change entry) that takes `before` to `after`, or None."""
    was_live, now_live = is_live(before), is_live(after)
    if before is not None and before.get("etag") == after.get("etag") and was_live == now_live:
        return None  # unchanged etag: nothing to write
    snapshot = dict(after)
    if before is not None and "_seq" in before:
        snapshot["_seq"] = before["_seq"]
    recurring = after.get("recurringEventId") or (before or {}).get("recurringEventId")
    kind: str | None = None
    fields = {}
    if now_live:
        fields = diff_fields(before if was_live else None, after)
        kind = UPDATED if was_live else CREATED
        if kind == UPDATED and not fields:
            kind = None  # only volatile fields moved: store, do not report
    elif was_live:
        kind, fields = DELETED, diff_fields(before, None)
    elif before is None:
        if not recurring:
            return None  # created and deleted before we ever saw it
        if not first_sync:
            # A newly cancelled instance of a series: one occurrence is gone.
            kind = DELETED
    change = None
    if kind is not None:
        change = ChangeDraft(
            kind=kind,
            event_id=event_id,
            fields=fields,
            etag=after.get("etag"),
            recurring_event_id=recurring,
        )
    return EventWrite(event_id=event_id, snapshot=snapshot, change=change)
