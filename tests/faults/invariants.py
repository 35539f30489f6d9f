"""The converged state a liveness or chaos test waits for, as a list of problems.

Per subscribed calendar: exactly one active subscription; no request recorded and
unserved (`requested_gen` ahead of `synced_gen`, or a `requested_at` left behind:
the final commit clears it); no lease held (`lease_until` left set); snapshots
equal `events.list` through the real client (etags and reported fields); the
change feed folded onto an empty map equals the snapshots; `seq` is dense
1..change_seq; every entry published (with an outbox); exactly one delivering
channel (`pending` or `active` in `channels`), and it is `active`, not expired
(`expiration` ahead of now), holds no renewer claim (`claimed_until`), and is
live on Google's side (the Calendar emulator knows it, not stopped, not expired,
same resource id). Snapshots are read only through `FirestoreStore.load_snapshots`
/ `iter_live_ids`, entries through `list_changes`.

Per connected account (`account_problems`): it follows exactly the calendars its
policy picks from its calendar list as Google lists it now (through the real
client; the policy's rules written out here, not calsync's own), each by one
active subscription; no list request left unserved; exactly one delivering
calendar-list channel, active, not expired, live at Google. (Each calendar it
follows is then checked as above.)

Across the stack (`quiet_problems`): the Cloud Tasks queue holds no task, and no
renewer continuation is queued or was asked for by the last renewer run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.sync.diff import reported_fields

DELIVERING = ("pending", "active")


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


def delivering_channels(db: Any, sub_id: str) -> list[tuple[str, dict[str, Any]]]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection("channels").where(filter=FieldFilter("sub_id", "==", sub_id))
    return [(snap.id, snap.to_dict() or {}) for snap in query.stream()
            if (snap.to_dict() or {}).get("state") in DELIVERING]


def channel_problems(tag: str, db: Any, sub_id: str, google: dict[str, dict[str, Any]] | None,
                     now: datetime) -> list[str]:
    """Exactly one delivering channel, active, unexpired, unclaimed, live at Google."""
    channels = delivering_channels(db, sub_id)
    if len(channels) != 1:
        shown = [f"{cid[:8]}:{doc.get('state')}" for cid, doc in channels]
        return [f"{tag}: {len(channels)} delivering channels {shown}"]
    channel_id, doc = channels[0]
    problems = []
    name = f"channel {channel_id[:8]}"
    if doc.get("state") != "active":
        problems.append(f"{tag}: {name} is {doc.get('state')} (its watch never completed)")
    expiration = doc.get("expiration")
    if expiration is None or expiration <= now:
        problems.append(f"{tag}: {name} delivering but expired at {expiration}")
    claimed = doc.get("claimed_until")
    if claimed is not None and claimed > now and doc.get("state") == "active":
        problems.append(f"{tag}: {name} claimed until {claimed} (a renewal left behind)")
    if google is not None and doc.get("state") == "active":
        live = google.get(channel_id)
        if live is None:
            problems.append(f"{tag}: {name} recorded active, unknown to Google")
        elif live.get("stopped") or live.get("expired"):
            problems.append(f"{tag}: {name} recorded active, "
                            f"{'stopped' if live.get('stopped') else 'expired'} at Google")
        elif live.get("resourceId") != doc.get("resource_id"):
            problems.append(f"{tag}: {name} resource id differs from Google's")
    return problems


def subscription_problems(store: Any, db: Any, watched: Watched, sub_id: str,
                          data: dict[str, Any],
                          google: dict[str, dict[str, Any]] | None = None) -> list[str]:
    tag = f"{watched.calendar_id[:18]}/{sub_id[:8]}"
    problems: list[str] = []
    now = datetime.now(UTC)
    state = store.get_writer_state(sub_id)
    requested = int(data.get("requested_gen") or 0)
    synced = int(state.get("synced_gen") or 0)
    # Backstops (the safety net) run far slower than the test: any request recorded
    # and not served once the system is quiet is left behind.
    if requested > synced or data.get("requested_at") is not None:
        problems.append(f"{tag}: request left pending (requested_gen {requested}, synced_gen "
                        f"{synced}, queued_gen {data.get('queued_gen')}, requested_at "
                        f"{data.get('requested_at')})")
    if state.get("lease_until") is not None:
        problems.append(f"{tag}: lease left behind (lease_until {state.get('lease_until')})")
    if "published_seq" in state and int(state.get("published_seq") or 0) < int(
            state.get("change_seq") or 0):
        problems.append(f"{tag}: entries unpublished (published_seq {state.get('published_seq')}"
                        f" < change_seq {state.get('change_seq')})")
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
    problems.extend(channel_problems(tag, db, sub_id, google, now))
    return problems


def google_channels(control: Any) -> dict[str, dict[str, Any]]:
    """Google's side of every channel (the Calendar emulator's control API), by id."""
    return {str(c["id"]): c for c in control.channels()}


def problems(store: Any, db: Any, calendars: Iterable[Watched],
             control: Any = None) -> list[str]:
    """Everything that keeps the system from being converged; empty when it is.
    With the emulator's `control`, delivering channels are checked at Google too."""
    google = google_channels(control) if control is not None else None
    found: list[str] = []
    for watched in calendars:
        subs = active_subscriptions(db, watched.calendar_id)
        if len(subs) != 1:
            found.append(f"{watched.calendar_id[:18]}: {len(subs)} active subscriptions")
        for sub_id, data in subs:
            found.extend(subscription_problems(store, db, watched, sub_id, data, google))
    return found


def calendar_list(api: Any) -> list[dict[str, Any]]:
    """Every entry of the user's calendar list, through the real client."""
    entries: list[dict[str, Any]] = []
    token = None
    while True:
        page = api.calendarList().list(pageToken=token).execute()
        entries.extend(page.get("items", []))
        token = page.get("nextPageToken")
        if not token:
            return entries


# Weakest first, as Google orders them; a policy's minimum is never below `reader`.
ROLES = ("freeBusyReader", "reader", "writer", "owner")


def wanted_calendars(api: Any, owner: str, policy: Any) -> set[str]:
    """The calendars the policy (`CalendarPolicy`) picks from the owner's list as Google
    lists it now: written here from DESIGN's words, not with calsync's own `decide`,
    so that a fault in that is seen."""
    floor = max(ROLES.index("reader"), ROLES.index(policy.min_access_role))
    excluded = {c.lower() for c in policy.exclude}
    return {str(e["id"]) for e in calendar_list(api)
            if not e.get("deleted") and e.get("accessRole") in ROLES
            and ROLES.index(e["accessRole"]) >= floor
            and str(e["id"]).lower() not in excluded
            and (policy.calendars == "all" or e.get("primary")
                 or str(e.get("dataOwner", "")).lower() == owner.lower())}


def account_followed(db: Any, account_id: str) -> dict[str, tuple[str, str]]:
    """calendar id -> (subscription id, status) of each calendar the account follows
    (a subscription it made and has not left)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection("subscriptions").where(
        filter=FieldFilter("account_id", "==", account_id))
    return {str(d.get("calendar_id")): (snap.id, str(d.get("status")))
            for snap in query.stream() for d in [snap.to_dict() or {}]
            if d.get("account_seq") is not None and d.get("status") != "removed"}


def account_problems(db: Any, account_id: str, owner: str, api: Any, policy: Any,
                     control: Any = None) -> list[str]:
    """Everything that keeps an account from following exactly its policy; `api` acts
    as `owner` (its list is read through it)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    tag = f"account {account_id[:8]}"
    found: list[str] = []
    want, have = wanted_calendars(api, owner, policy), account_followed(db, account_id)
    if set(have) != want:
        found.append(f"{tag}: follows {len(have)}, its policy picks {len(want)}: missing "
                     f"{sorted(want - set(have))}, extra {sorted(set(have) - want)}")
    found += [f"{tag}: {cal[:18]} is {status}" for cal, (_, status) in have.items()
              if status != "active"]
    data = db.document(f"accounts/{account_id}").get().to_dict() or {}
    if data.get("requested_at") is not None:
        found.append(f"{tag}: a list request left unserved")
    channels = [(snap.id, snap.to_dict() or {}) for snap in db.collection("channels")
                .where(filter=FieldFilter("account_id", "==", account_id)).stream()]
    delivering = [(cid, doc) for cid, doc in channels if doc.get("state") in DELIVERING]
    if len(delivering) != 1:
        return found + [f"{tag}: {len(delivering)} delivering list channels"]
    channel_id, doc = delivering[0]
    name = f"{tag}: list channel {channel_id[:8]}"
    if doc.get("state") != "active":
        found.append(f"{name} is {doc.get('state')} (its watch never completed)")
    expiration = doc.get("expiration")
    if expiration is None or expiration <= datetime.now(UTC):
        found.append(f"{name} delivering but expired at {expiration}")
    if control is not None and doc.get("state") == "active":
        live = google_channels(control).get(channel_id)
        if live is None or live.get("stopped") or live.get("expired"):
            found.append(f"{name} recorded active, not live at Google")
    return found


def quiet_problems(tasks: list[tuple[str, str]], renewer_url: str,
                   last_report: dict[str, Any] | None) -> list[str]:
    """The queue drained and renewer continuations stopped (`tasks`: name and URL of
    every task the Cloud Tasks emulator holds)."""
    found = []
    continuations = [name for name, url in tasks if url == renewer_url]
    syncs = [name for name, url in tasks if url != renewer_url]
    if syncs:
        found.append(f"queue not drained: {len(syncs)} sync tasks {sorted(syncs)[:4]}")
    if continuations:
        found.append(f"renewer continuations queued: {continuations[:4]}")
    if last_report and last_report.get("continued"):
        found.append("the last renewer run queued a continuation of itself")
    return found
