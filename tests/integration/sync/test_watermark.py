"""The "complete as of" watermark against the Calendar and Firestore emulators
(DESIGN.md, "Accounts, lifecycle events, watermark"): `complete_as_of` is when
the last completed listing began, and every change Google had applied before it
is already in the feed.

A writer thread edits the calendar (creates, renames, deletes) while runs
follow one another; after each run the watermark and `change_seq` are read, then
the calendar's current state: every event whose `updated` is before the
watermark must be in the feed (up to that `change_seq`) in exactly that state.
The engine runs on the real clock here, the one the Calendar emulator stamps
`updated` with."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime
from typing import Any

from functions.sync.engine import Outcome, SyncSettings
from tests.integration.sync.harness import Harness, fold

USER = "watermark@example.com"


def _now() -> datetime:
    return datetime.now(UTC)


def _calendar_now(harness: Harness) -> dict[str, dict[str, Any]]:
    """Every item of a full listing with deleted ones, by id."""
    found: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        page = harness.api.events().list(calendarId="primary", showDeleted=True,
                                         maxResults=2500, pageToken=token).execute()
        for item in page.get("items", []):
            found[item["id"]] = item
        token = page.get("nextPageToken")
        if not token:
            return found


def _updated(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["updated"].replace("Z", "+00:00"))


class Writer(threading.Thread):
    """Edits the calendar until stopped: its own client (the API client is not
    thread-safe)."""

    def __init__(self, harness: Harness, seed: int) -> None:
        super().__init__(daemon=True)
        from infra.calendar_emulator.testing import calendar_service

        self._api = calendar_service(harness.emulator.base_url, harness.user)
        self._random = random.Random(seed)
        self.stop = threading.Event()
        self.live: list[str] = []
        # When each delete returned: a cancelled item carries no `updated`, and
        # Google's stamp of the deletion is earlier than this.
        self.deleted_at: dict[str, datetime] = {}
        self.edits = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        events = self._api.events()
        try:
            while not self.stop.is_set():
                roll = self._random.random()
                if roll < 0.4 or len(self.live) < 3:
                    day = self._random.randint(1, 28)
                    body = {"summary": f"made {self.edits}",
                            "start": {"dateTime": f"2031-02-{day:02d}T09:00:00Z"},
                            "end": {"dateTime": f"2031-02-{day:02d}T10:00:00Z"}}
                    self.live.append(events.insert(calendarId="primary",
                                                   body=body).execute()["id"])
                elif roll < 0.8:
                    events.patch(calendarId="primary", eventId=self._random.choice(self.live),
                                 body={"summary": f"renamed {self.edits}"}).execute()
                else:
                    victim = self.live.pop(self._random.randrange(len(self.live)))
                    events.delete(calendarId="primary", eventId=victim).execute()
                    self.deleted_at[victim] = _now()
                self.edits += 1
                self.stop.wait(0.01)
        except Exception as err:  # noqa: BLE001 - surfaced by the test
            self.failure = err


def test_every_change_before_the_watermark_is_in_the_feed(firestore_db: Any,
                                                          calendar: Any) -> None:
    harness = Harness(firestore_db, calendar, USER, page_size=4)
    for i in range(6):
        harness.insert(f"before {i}", day=i + 1)
    engine = harness.engine(clock=_now, settings=SyncSettings(
        page_size=4, lease_seconds=120, min_sync_interval=0))
    assert harness.store.get_writer_state(harness.sub.id).get("complete_as_of") is None
    writer = Writer(harness, seed=20)
    writer.start()
    checked = 0
    previous: datetime | None = None
    try:
        for _ in range(12):
            harness.store.record_sync_request(harness.sub.id, _now())
            started = _now()
            assert engine.run(harness.sub.id).outcome is Outcome.SYNCED
            state = harness.store.get_writer_state(harness.sub.id)
            watermark, change_seq = state["complete_as_of"], int(state["change_seq"])
            # When this run's listing began: after the run started, never moving back.
            assert started <= watermark <= _now()
            assert previous is None or watermark >= previous
            previous = watermark
            feed = [e for e in harness.feed() if e.seq <= change_seq]
            known = fold(feed)
            deleted = dict(writer.deleted_at)
            for event_id, item in _calendar_now(harness).items():
                if item.get("status") == "cancelled":
                    if event_id in deleted and deleted[event_id] < watermark:
                        assert event_id not in known, f"{event_id} deleted before {watermark}"
                        checked += 1
                    continue
                if _updated(item) >= watermark:
                    continue  # changed since: the next listing's business
                assert known.get(event_id, {}).get("summary") == item["summary"], (
                    f"{event_id} {item['summary']!r} at {item['updated']} is not in the "
                    f"feed as of {watermark}")
                checked += 1
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.failure is None, writer.failure
    assert writer.edits > 20 and checked > 20  # the check had cases to bite on


def test_the_watermark_is_shown_by_the_pages_the_subscription_and_status(
        firestore_db: Any, calendar: Any) -> None:
    from functions.adapters.firestore.feed import FirestoreFeedStore
    from functions.adapters.firestore.subscriptions import SubscriptionStore
    from functions.adapters.firestore.views import FirestoreSubscriptionRecords
    from functions.api.feed import ChangesQuery, Feed
    from functions.api.tokens import PageTokens
    from functions.api.views import SubscriptionViews
    from functions.cli.admin import STATUS_COLUMNS, _status_row
    from functions.config import Settings
    from functions.lifecycle.subscriptions import SubscriptionService
    from functions.model import rfc3339
    from tests.integration.lifecycle.conftest import RecordingQueue, ScriptedChannels

    harness = Harness(firestore_db, calendar, USER)
    sub_id = harness.sub.id
    tokens = PageTokens([b"k" * 32])
    feed = Feed(FirestoreFeedStore(firestore_db), tokens, clock=harness.clock)
    views = SubscriptionViews(FirestoreSubscriptionRecords(firestore_db), tokens)
    settings = Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "local", "CALSYNC_TASKS_QUEUE": "q",
        "CALSYNC_WORKER_URL": "http://127.0.0.1:1/", "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
        "CALSYNC_CHANNEL_TOKEN_KEYS": "k:" + "b" * 43 + "="})
    service = SubscriptionService(settings, SubscriptionStore(firestore_db),
                                  ScriptedChannels([harness.clock()]), harness.store,
                                  RecordingQueue(), clock=harness.clock)
    # Null until a listing completes.
    assert feed.changes(sub_id, ChangesQuery()).to_json()["complete_as_of"] is None
    assert views.get(sub_id)["complete_as_of"] is None  # type: ignore[index]
    assert service.status(sub_id).complete_as_of is None
    for i in range(3):
        harness.insert(f"event {i}", day=i + 1)
    assert harness.sync().outcome is Outcome.SYNCED
    first = harness.store.get_writer_state(sub_id)["complete_as_of"]
    assert feed.changes(sub_id, ChangesQuery()).to_json()["complete_as_of"] == rfc3339(first)
    page = feed.events(sub_id, None, 2, False)
    assert page.to_json()["complete_as_of"] == rfc3339(first) and page.next_page_token

    harness.insert("later", day=9)
    assert harness.sync().outcome is Outcome.SYNCED
    second = harness.store.get_writer_state(sub_id)["complete_as_of"]
    assert second > first
    # The next events page shows the first page's watermark (read with `as_of_seq`).
    following = feed.events(sub_id, page.next_page_token, 2, False)
    assert (following.as_of_seq, following.to_json()["complete_as_of"]) == (3, rfc3339(first))
    assert feed.changes(sub_id, ChangesQuery()).to_json()["complete_as_of"] == rfc3339(second)
    assert views.get(sub_id)["complete_as_of"] == rfc3339(second)  # type: ignore[index]
    status = service.status(sub_id)
    assert status.complete_as_of == second
    row = dict(zip(STATUS_COLUMNS, _status_row(status), strict=True))
    assert row["complete as of"].startswith(second.strftime("%Y-%m-%d %H:%M:%S"))
