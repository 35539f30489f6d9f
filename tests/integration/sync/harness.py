"""Test harness: the real store and Calendar adapter, a controllable clock, a
recording task queue, fault-injecting port wrappers, and the three checks the
guarantees are stated in (snapshots = listing, fold(feed) = snapshots, dense seq).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.firestore import codec
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.google.calendar import GoogleCalendar, OwnerTokenCredentials
from functions.model import CHANGE_KINDS, ChangeEntry, EventPage, Subscription
from functions.ports import CalendarPort, TaskQueue
from functions.sync.diff import reported_fields
from functions.sync.engine import SyncEngine, SyncReport, SyncSettings


class Crash(Exception):
    """Simulates the process dying at an injected point (not a CalsyncError)."""


class TestClock:
    """Real time plus an offset the test can advance (lease expiry)."""

    __test__ = False

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class RecordingQueue(TaskQueue):
    """Remembers every task queued, de-duplicated by name like Cloud Tasks."""

    tasks: list[tuple[str, int, datetime | None, str]] = field(default_factory=list)

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        if not any(t[0] == sub_id and t[1] == generation and t[3] == origin
                   for t in self.tasks):
            self.tasks.append((sub_id, generation, not_before, origin))


class HookedCalendar(CalendarPort):
    """Delegates to a real adapter; `before(call_number)` may raise or act first."""

    def __init__(self, inner: CalendarPort, before: Callable[[int], None]) -> None:
        self.inner, self.before, self.calls = inner, before, 0

    def list_page(self, subscription: Subscription, *, sync_token: str | None,
                  page_token: str | None, page_size: int) -> EventPage:
        self.calls += 1
        self.before(self.calls)
        return self.inner.list_page(subscription, sync_token=sync_token,
                                    page_token=page_token, page_size=page_size)


class CrashingStore(FirestoreStore):
    """The real store that raises Crash right after the n-th call of `method`."""

    def __init__(self, client: Any, method: str, after_calls: int,
                 before: bool = False) -> None:
        super().__init__(client)
        self.method, self.after_calls, self.before, self.calls = (
            method, after_calls, before, 0)

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name != object.__getattribute__(self, "method"):
            return attr

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.before and self.calls == self.after_calls:
                raise Crash(f"crash before {name} #{self.calls}")
            result = attr(*args, **kwargs)
            if not self.before and self.calls == self.after_calls:
                raise Crash(f"crash after {name} #{self.calls}")
            return result

        return wrapped


class Harness:
    """One subscription on one emulator user, synced through the real adapters."""

    def __init__(self, db: Any, emulator: Any, user: str, *, page_size: int = 5,
                 sub_id: str = "sub-1") -> None:
        from infra.calendar_emulator.testing import calendar_service

        self.db, self.emulator, self.user = db, emulator, user
        self.store = FirestoreStore(db)
        self.clock = TestClock()
        self.queue = RecordingQueue()
        self.page_size = page_size
        self.calendar = GoogleCalendar(OwnerTokenCredentials(),
                                       api_endpoint=emulator.api_endpoint, num_retries=0)
        self.api = calendar_service(emulator.base_url, user)
        self.sub = Subscription(id=sub_id, calendar_id="primary", owner=user,
                                credentials_ref="bearer")
        self.store.save_subscription(self.sub)

    def engine(self, store: FirestoreStore | None = None, calendar: CalendarPort | None = None,
               clock: Callable[[], datetime] | None = None,
               settings: SyncSettings | None = None) -> SyncEngine:
        return SyncEngine(store or self.store, calendar or self.calendar, self.queue,
                          settings or SyncSettings(page_size=self.page_size, lease_seconds=120,
                                                   min_sync_interval=2),
                          clock=clock or self.clock)

    def request(self) -> None:
        """What the webhook does for a notification: record a sync request.

        The clock moves past MIN_SYNC_INTERVAL first, as it would between
        real runs (the engine defers runs that start sooner).
        """
        self.clock.advance(2.5)
        self.store.record_sync_request(self.sub.id, self.clock())

    def sync(self, **ports: Any) -> SyncReport:
        """A task for a fresh request, run by the worker."""
        self.request()
        return self.engine(**ports).run(self.sub.id)

    def expire_lease(self) -> None:
        self.clock.advance(121)

    # -- calendar mutations through the real client --------------------------------

    def insert(self, summary: str, day: int = 1, **extra: Any) -> dict[str, Any]:
        body = {"summary": summary, **_times(day), **extra}
        return self.api.events().insert(calendarId="primary", body=body).execute()

    def insert_series(self, summary: str, count: int = 5, day: int = 1) -> dict[str, Any]:
        return self.insert(summary, day, recurrence=[f"RRULE:FREQ=DAILY;COUNT={count}"])

    def patch(self, event_id: str, **fields: Any) -> dict[str, Any]:
        return self.api.events().patch(calendarId="primary", eventId=event_id,
                                       body=fields).execute()

    def delete(self, event_id: str) -> None:
        self.api.events().delete(calendarId="primary", eventId=event_id).execute()

    def instances(self, event_id: str) -> list[dict[str, Any]]:
        return self.api.events().instances(calendarId="primary",
                                           eventId=event_id).execute()["items"]

    # -- observations ------------------------------------------------------------------

    def listing(self) -> dict[str, str]:
        """id -> etag of every live item of a full listing (the truth)."""
        found: dict[str, str] = {}
        token = None
        while True:
            page = self.api.events().list(calendarId="primary", singleEvents=False,
                                          maxResults=2500, pageToken=token).execute()
            for item in page.get("items", []):
                if item.get("status") != "cancelled":
                    found[item["id"]] = item["etag"]
            token = page.get("nextPageToken")
            if not token:
                return found

    def snapshots(self) -> dict[str, dict[str, Any]]:
        events = self.db.collection("subscriptions").document(self.sub.id).collection("events")
        return {doc.id: codec.decode_snapshot(doc.to_dict() or {}) for doc in events.stream()}

    def live(self) -> dict[str, str]:
        return {i: s["etag"] for i, s in self.snapshots().items() if not s.get("_deleted")}

    def feed(self) -> list[ChangeEntry]:
        entries: list[ChangeEntry] = []
        cursor = 0
        while True:
            page = self.store.list_changes(self.sub.id, cursor, 300)
            entries.extend(page.entries)
            if not page.entries:
                return entries
            cursor = page.next_cursor

    def check(self) -> list[ChangeEntry]:
        """The three guarantees at a quiet point; returns the feed."""
        snapshots = self.snapshots()
        live = {i: s for i, s in snapshots.items() if not s.get("_deleted")}
        assert {i: s["etag"] for i, s in live.items()} == self.listing()
        entries = self.feed()
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        state = self.store.get_writer_state(self.sub.id)
        assert state.get("change_seq", 0) == len(entries)
        assert fold(entries) == {i: reported_fields(s) for i, s in live.items()}
        for event_id, snapshot in snapshots.items():
            last = [e.seq for e in entries if e.event_id == event_id]
            if last:
                assert snapshot.get("_seq") == last[-1], event_id
        return entries


def fold(entries: list[ChangeEntry]) -> dict[str, dict[str, Any]]:
    """Replay the feed: the reported fields of every live event (lifecycle entries,
    such as `resync_required` after a 410, change no event)."""
    state: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.kind not in CHANGE_KINDS:
            continue
        if entry.kind == "deleted":
            state.pop(entry.event_id, None)
            continue
        if entry.kind == "created":
            assert entry.event_id not in state, f"created twice: {entry.event_id}"
            state[entry.event_id] = {}
        else:
            assert entry.event_id in state, f"update of unknown {entry.event_id}"
        current = state[entry.event_id]
        for name, change in entry.fields.items():
            if change["after"] is None:
                current.pop(name, None)
            else:
                current[name] = change["after"]
    return state


def _times(day: int) -> dict[str, Any]:
    start = datetime(2031, 1, 1, 9, tzinfo=UTC) + timedelta(days=day)
    end = start + timedelta(hours=1)
    return {"start": {"dateTime": start.isoformat().replace("+00:00", "Z"), "timeZone": "UTC"},
            "end": {"dateTime": end.isoformat().replace("+00:00", "Z"), "timeZone": "UTC"}}


def kinds(entries: list[ChangeEntry]) -> list[tuple[str, str]]:
    return [(e.kind, e.event_id) for e in entries]
