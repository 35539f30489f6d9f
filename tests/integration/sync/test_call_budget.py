"""Calendar call budgets (DESIGN.md, "Budgets"; issue 19 item 2), on the emulators.

- The owner's budget adapter (`FirestoreCallBudget`) on the Firestore emulator: a
  share starts full, is spent, books slots a take's refill apart for the runs it
  defers and serves them at their slots before runs that did not wait; a renewal
  books nothing; concurrent takes never spend a token twice; an owner's calendars
  spread over the shares.
- A run over its owner's budget makes no call and is deferred, through the real
  Cloud Tasks emulator (with production's name rule), to a task named for the
  time the budget allows, which syncs; a pass longer than the task's call
  allowance goes on page by page in follow-up tasks, never from the top.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.budget import (
    FirestoreCallBudget,
    budget_share_id,
    share_of,
)
from functions.adapters.firestore.catalogue import CALL_BUDGETS
from functions.adapters.google.channels import GoogleChannels
from functions.adapters.google.tasks import CloudTasksQueue, build_client
from functions.config import Settings
from functions.errors import StoreError
from functions.model import Subscription
from functions.ports import ChannelKeeper
from functions.sync.engine import SyncEngine, SyncSettings
from tests.faults.serving import serve_worker
from tests.faults.tasks import NameRuleClient

from .harness import Harness
from .test_continuation import CountingCalendar, Rig, Worker

OWNER = "budget@example.com"
PAGE = 5


SUB = "sub-a"


def _share(db: Any, owner: str, share: int) -> Any:
    return db.collection(CALL_BUDGETS).document(budget_share_id(owner, share)).get()


def test_a_share_starts_full_is_spent_and_books_a_slot_when_short(firestore_db: Any) -> None:
    # 12 a minute over one share: 0.2 calls a second, the share holds 1.2.
    budget = FirestoreCallBudget(firestore_db, per_minute=12, shards=1)
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert budget.take(OWNER, SUB, 1, now) is None
    assert _share(firestore_db, OWNER, 0).to_dict()["tokens"] == pytest.approx(0.2)
    # Short: the first slot is when 0.8 more calls have refilled (4 s), the next one a
    # take's worth (5 s) after it, whoever asks.
    first = budget.take(OWNER, SUB, 1, now)
    assert first == now + timedelta(seconds=4)
    second = budget.take(OWNER, "sub-b", 1, now + timedelta(seconds=1))
    assert second == first + timedelta(seconds=5)
    # Before its slot has passed, a run that did not wait is put behind the others ...
    third = budget.take(OWNER, "sub-c", 1, first)
    assert third == second + timedelta(seconds=5)
    # ... and the runs that waited are served at their slots, each once.
    assert budget.take(OWNER, SUB, 1, first, booked=first) is None
    assert budget.take(OWNER, "sub-b", 1, second, booked=second) is None
    assert budget.take(OWNER, "sub-c", 1, third, booked=third) is None
    # Refilled for a long while: never more than the share holds.
    later = third + timedelta(hours=1)
    assert budget.take(OWNER, SUB, 1, later) is None
    assert _share(firestore_db, OWNER, 0).to_dict()["tokens"] == pytest.approx(0.2)


def test_a_renewal_that_finds_its_share_short_books_and_writes_nothing(
        firestore_db: Any) -> None:
    budget = FirestoreCallBudget(firestore_db, per_minute=12, shards=1)
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert budget.take(OWNER, SUB, 1, now) is None
    written = _share(firestore_db, OWNER, 0)
    assert budget.take(OWNER, SUB, 2, now, book=False) == now + timedelta(seconds=9)
    assert _share(firestore_db, OWNER, 0).update_time == written.update_time
    # Nothing was booked: a run asking now is given the same time as before.
    assert budget.take(OWNER, SUB, 1, now) == now + timedelta(seconds=4)


def test_concurrent_takes_never_spend_a_token_or_a_slot_twice(firestore_db: Any) -> None:
    # One call a minute, one share: the share holds one call, and the test is too short
    # for a second to refill.
    budget = FirestoreCallBudget(firestore_db, per_minute=1, shards=1)
    now = datetime.now(UTC)
    answers: list[datetime | None] = []
    contended: list[StoreError] = []
    lock = threading.Lock()

    def take(index: int) -> None:
        try:
            answer = budget.take(OWNER, f"sub-{index}", 1, now)
        except StoreError as err:  # contention past the client's retries: the task retries
            with lock:
                contended.append(err)
            return
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Under load most may lose the race past the client's retries (the task retries);
    # whoever got an answer got a true one.
    assert len(answers) + len(contended) == 8 and answers
    assert answers.count(None) <= 1
    # Every deferred run was given its own slot, whole minutes apart.
    slots = sorted(a for a in answers if a is not None)
    gaps = [(b - a).total_seconds() for a, b in zip(slots, slots[1:], strict=False)]
    assert all(gap >= 60.0 - 1e-6 for gap in gaps), gaps


def test_an_owners_calendars_spread_over_its_shares(firestore_db: Any) -> None:
    budget = FirestoreCallBudget(firestore_db, per_minute=480, shards=16)
    now = datetime.now(UTC)
    subs = [f"sub-{i}" for i in range(160)]
    shares = Counter(share_of(sub_id, 16) for sub_id in subs)
    assert len(shares) == 16 and max(shares.values()) <= 2 * 160 // 16
    for sub_id in subs[:32]:
        budget.take(OWNER, sub_id, 1, now)
    used = {share_of(sub_id, 16) for sub_id in subs[:32]}
    for share in range(16):
        assert _share(firestore_db, OWNER, share).exists == (share in used)
    assert not _share(firestore_db, "someone-else@example.com", 0).exists


class WatchOnce(ChannelKeeper):
    """Opens the subscription's channel once, by a real `events.watch` on the Calendar
    emulator (through the real client); keeps no record beyond that (the engine's
    counting of the watch is what is tested, not the channel's lifecycle)."""

    def __init__(self, channels: GoogleChannels) -> None:
        self.channels = channels
        self.opened = False

    def ensure_channel(self, subscription: Subscription) -> bool:
        if self.opened:
            return False
        self.channels.watch(subscription, uuid.uuid4().hex, "token", "http://127.0.0.1:9/",
                            600)
        self.opened = True
        return True

    def has_delivering(self, sub_id: str) -> bool | None:
        return self.opened


def _rig(firestore_db: Any, calendar: Any, tasks_emulator: str, tasks_queue: str,
         per_minute: int, channels: bool = False) -> Iterator[Rig]:
    _, project, _, region, _, queue_id = tasks_queue.split("/")
    calendar.control.add_user(OWNER)
    harness = Harness(firestore_db, calendar, OWNER, page_size=PAGE, sub_id="sub-budget")
    worker = Worker(harness)
    server = serve_worker(worker)
    settings = Settings(project=project, region=region, tasks_queue=queue_id,
                        worker_url=f"http://127.0.0.1:{server.server_address[1]}/",
                        tasks_emulator_host=tasks_emulator)
    queue = CloudTasksQueue(settings, client=NameRuleClient(build_client(settings)),
                            queue_path=tasks_queue)
    counting = CountingCalendar(harness.calendar)
    worker.engine = SyncEngine(
        harness.store, counting, queue,
        SyncSettings(page_size=PAGE, lease_seconds=30, min_sync_interval=0.2,
                     calls_per_task=1),
        budget=FirestoreCallBudget(firestore_db, per_minute=per_minute, shards=1),
        channels=WatchOnce(GoogleChannels(harness.calendar)) if channels else None)
    try:
        yield Rig(harness, worker, queue, counting)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tight(firestore_db: Any, calendar: Any, tasks_emulator: str,
          tasks_queue: str) -> Iterator[Rig]:
    """12 calls a minute for the owner: the share holds 1.2, refilled at 0.2 a second."""
    yield from _rig(firestore_db, calendar, tasks_emulator, tasks_queue, per_minute=12)


@pytest.fixture
def ample(firestore_db: Any, calendar: Any, tasks_emulator: str,
          tasks_queue: str) -> Iterator[Rig]:
    yield from _rig(firestore_db, calendar, tasks_emulator, tasks_queue, per_minute=480)


@pytest.fixture
def watching(firestore_db: Any, calendar: Any, tasks_emulator: str,
             tasks_queue: str) -> Iterator[Rig]:
    """Ample budget; the run opens the subscription's channel first (a real watch)."""
    yield from _rig(firestore_db, calendar, tasks_emulator, tasks_queue, per_minute=480,
                    channels=True)


def test_a_run_over_its_owners_budget_is_deferred_to_when_the_budget_allows(
        tight: Rig) -> None:
    harness = tight.harness
    harness.insert("one", day=1)
    tight.request(1)
    tight.synced(1)  # the share's one call
    harness.insert("two", day=2)
    tight.request(2)
    tight.synced(2)
    outcomes = tight.worker.outcomes
    # The second run found the share short: no call, deferred, then synced by the task
    # named for the time the budget allowed (Cloud Tasks' name rule enforced).
    assert outcomes[0] == "synced" and outcomes[-1] == "synced", outcomes
    assert "deferred" in outcomes and "failed" not in outcomes, outcomes
    assert len(tight.calendar.page_tokens) == 2  # one listing per sync, none deferred
    state = harness.store.get_writer_state(harness.sub.id)
    assert int(state["synced_gen"]) == 2
    assert [e.kind for e in harness.check()] == ["created", "created"]


def test_a_pass_longer_than_the_tasks_allowance_goes_on_page_by_page(ample: Rig) -> None:
    harness = ample.harness
    ids = [harness.insert(f"single {i}", day=i)["id"] for i in range(13)]
    pages = -(-len(ids) // PAGE)
    ample.request(1)
    ample.synced(1)
    # One call per task: one page per run, each from the page token the last one saved.
    assert ample.worker.outcomes == ["continued"] * (pages - 1) + ["synced"]
    assert ample.calendar.page_tokens[0] is None and None not in ample.calendar.page_tokens[1:]
    assert len(set(ample.calendar.page_tokens)) == len(ample.calendar.page_tokens) == pages
    assert sorted(e.event_id for e in harness.check()) == sorted(ids)


def test_after_a_410_the_full_listing_goes_on_task_by_task_and_ends(ample: Rig) -> None:
    """The incremental call answered 410 spends the task's one call; the full listing
    that must follow is still begun in the same run (nothing could be saved before
    its first page), then goes on one page per task: it never loops on the 410."""
    harness = ample.harness
    ids = [harness.insert(f"single {i}", day=i)["id"] for i in range(8)]
    ample.request(1)
    ample.synced(1)
    runs = len(ample.worker.outcomes)
    harness.emulator.control.invalidate_sync_tokens(harness.user)
    ids.append(harness.insert("after the 410", day=9)["id"])
    ample.request(2)
    ample.synced(2)
    later = ample.worker.outcomes[runs:]
    assert later == ["continued"] * (len(later) - 1) + ["synced"], later
    assert len(later) == -(-len(ids) // PAGE)  # one task per page of the full listing
    assert sorted({e.event_id for e in harness.check() if e.event_id}) == sorted(ids)


def test_a_first_run_that_opens_a_channel_lists_in_the_next_task(watching: Rig) -> None:
    """The watch is a call of the task's allowance: with one call a task, the run that
    opens the channel lists nothing and a follow-up task lists (so the queue's rate
    bounds the calls also while subscriptions are onboarded at that rate)."""
    harness = watching.harness
    ids = [harness.insert(f"single {i}", day=i)["id"] for i in range(3)]
    calls = harness.emulator.control.counters()["calls"]
    before = {m: int(calls.get(m, 0)) for m in ("events.watch", "events.list")}
    watching.request(1)
    watching.synced(1)
    calls = harness.emulator.control.counters()["calls"]
    made = {m: int(calls.get(m, 0)) - before[m] for m in before}
    assert made == {"events.watch": 1, "events.list": 1}, made
    # Two tasks, one call each: the watch, then the listing (one page).
    assert watching.worker.outcomes == ["continued", "synced"], watching.worker.outcomes
    assert watching.calendar.page_tokens == [None]
    assert sorted(e.event_id for e in harness.check()) == sorted(ids)
