"""The converged state a liveness or chaos test waits for, as a list of problems.

Per subscribed calendar: exactly one active subscription; no request left
pending for long (STALE_REQUEST); snapshots equal `events.list` through the real client
(etags and reported fields); the change feed folded onto an empty map equals
the snapshots; `seq` is dense 1..change_seq; exactly one delivering channel
(`pending` or `active` in `channels`). Snapshots are read only through
`FirestoreStore.load_snapshots` / `iter_live_ids`, entries through `list_changes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.sync.diff import reported_fields

DELIVERING = ("pending", "active")
STALE_REQUEST = timedelta(seconds=20)


@dataclass(frozen=True)
class Watched:
    """A calendar the test subscribed (maybe more than once), and how to read it."""

    calendar_id: str
    owner: str
    api: Any  # the real googleapiclient service acting as `owner`


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def listed(api: Any, calendar_id: str) -> dict[str, dict[str, Any]]:
    """Every live event of the calendar, by id, through the real client."""
    items: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        page = api.events().list(calendarId=calendar_id, pageToken=token,
                                 maxResults=2500).execute()
        for item in page.get("items", []):
            if item.get("status") != "cancelled":
                items[item["id"]] = item
        token = page.get("nextPageToken")
        if not token:
            return items


def live_snapshots(store: Any, sub_id: str) -> dict[str, dict[str, Any]]:
    ids = [i for batch in store.iter_live_ids(sub_id, 500) for i in batch]
    snaps = store.load_snapshots(sub_id, ids)
    return {i: s for i, s in snaps.items() if s and not s.get("_deleted")}


def feed(store: Any, sub_id: str) -> list[Any]:
    entries: list[Any] = []
    cursor = 0
    while True:
        page = store.list_changes(sub_id, cursor, 500)
        entries.extend(page.entries)
        if not page.entries:
            return entries
        cursor = page.next_cursor


def fold(entries: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Replay entries onto an empty map: id → reported fields (their `after` values).
    Lifecycle entries (`resync_required` after a 410, `error`, ...) change no event."""
    state: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.kind not in ("created", "updated", "deleted"):
            continue
        if entry.kind == "deleted":
            state.pop(entry.event_id, None)
            continue
        fields = {} if entry.kind == "created" else dict(state.get(entry.event_id, {}))
        for name, change in (entry.fields or {}).items():
            fields[name] = change.get("after") if isinstance(change, dict) else None
        state[entry.event_id] = _present(fields)
    return state


def active_subscriptions(db: Any, calendar_id: str) -> list[tuple[str, dict[str, Any]]]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection("subscriptions").where(
        filter=FieldFilter("calendar_id", "==", calendar_id))
    return [(snap.id, snap.to_dict() or {}) for snap in query.stream()
            if (snap.to_dict() or {}).get("status") == "active"]


def delivering_channels(db: Any, sub_id: str) -> list[str]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection("channels").where(filter=FieldFilter("sub_id", "==", sub_id))
    return [f"{snap.id}:{(snap.to_dict() or {}).get('state')}" for snap in query.stream()
            if (snap.to_dict() or {}).get("state") in DELIVERING]


def subscription_problems(store: Any, db: Any, watched: Watched, sub_id: str,
                          data: dict[str, Any]) -> list[str]:
    tag = f"{watched.calendar_id[:18]}/{sub_id[:8]}"
    problems: list[str] = []
    state = store.get_writer_state(sub_id)
    requested = int(data.get("requested_gen") or 0)
    synced = int(state.get("synced_gen") or 0)
    # The safety net keeps recording requests on a short interval, so a fresh pending
    # request is normal; one that no run has served for STALE_REQUEST is a stall.
    requested_at = data.get("requested_at")
    age = (datetime.now(UTC) - requested_at).total_seconds() if requested_at else None
    if requested > synced and (age is None or age > STALE_REQUEST.total_seconds()):
        problems.append(f"{tag}: request pending for {age and round(age)}s (requested_gen "
                        f"{requested} > synced_gen {synced}, queued_gen {data.get('queued_gen')})")
    if state.get("sync_token") is None:
        problems.append(f"{tag}: never synced (no sync token)")
    calendar = listed(watched.api, watched.calendar_id)
    snapshots = live_snapshots(store, sub_id)
    if set(snapshots) != set(calendar):
        problems.append(f"{tag}: snapshots != calendar: missing "
                        f"{len(set(calendar) - set(snapshots))}, extra "
                        f"{len(set(snapshots) - set(calendar))} (of {len(calendar)})")
    stale = [i for i in set(snapshots) & set(calendar)
             if snapshots[i].get("etag") != calendar[i].get("etag")
             or reported_fields(snapshots[i]) != reported_fields(calendar[i])]
    if stale:
        problems.append(f"{tag}: {len(stale)} snapshots differ from the calendar")
    entries = feed(store, sub_id)
    seqs = [e.seq for e in entries]
    change_seq = int(state.get("change_seq") or 0)
    if seqs != list(range(1, len(seqs) + 1)) or len(seqs) != change_seq:
        problems.append(f"{tag}: seq not dense 1..change_seq ({len(seqs)} entries, "
                        f"change_seq {change_seq})")
    folded = fold(entries)
    if set(folded) != set(snapshots):
        problems.append(f"{tag}: folded feed != snapshots: missing "
                        f"{len(set(snapshots) - set(folded))}, extra "
                        f"{len(set(folded) - set(snapshots))}")
    wrong = [i for i in set(folded) & set(snapshots)
             if folded[i] != _present(reported_fields(snapshots[i]))]
    if wrong:
        problems.append(f"{tag}: {len(wrong)} folded events differ from their snapshots")
    channels = delivering_channels(db, sub_id)
    if len(channels) != 1:
        problems.append(f"{tag}: {len(channels)} delivering channels {channels}")
    return problems


def problems(store: Any, db: Any, calendars: Iterable[Watched]) -> list[str]:
    """Everything that keeps the system from being converged; empty when it is."""
    found: list[str] = []
    for watched in calendars:
        subs = active_subscriptions(db, watched.calendar_id)
        if len(subs) != 1:
            found.append(f"{watched.calendar_id[:18]}: {len(subs)} active subscriptions")
        for sub_id, data in subs:
            found.extend(subscription_problems(store, db, watched, sub_id, data))
    return found
