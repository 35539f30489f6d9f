"""Calendar call budgets (DESIGN.md, "Budgets"; issue 19 item 2), on the emulators.

- The owner's budget adapter (`FirestoreCallBudget`) on the Firestore emulator: a
  share starts full, is spent, answers when it will hold the calls and writes
  nothing then; concurrent takes never spend a token twice; an owner's takes land
  on several documents.
- A run over its owner's budget makes no call and is deferred, through the real
  Cloud Tasks emulator (with production's name rule), to a task named for the
  time the budget allows, which syncs; a pass longer than the task's call
  allowance goes on page by page in follow-up tasks, never from the top.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.budget import FirestoreCallBudget, budget_share_id
from functions.adapters.firestore.catalogue import CALL_BUDGETS
from functions.adapters.google.tasks import CloudTasksQueue, build_client
from functions.config import Settings
from functions.sync.engine import SyncEngine, SyncSettings
from tests.e2e.conftest import wait_until
from tests.faults.tasks import NameRuleClient

from .harness import Harness
from .test_continuation import CountingCalendar, Worker, serve

OWNER = "budget@example.com"
PAGE = 5


def _share(db: Any, owner: str, share: int) -> Any:
    return db.collection(CALL_BUDGETS).document(budget_share_id(owner, share)).get()


def test_a_share_starts_full_is_spent_and_says_when_it_holds_the_calls(
        firestore_db: Any) -> None:
    # 12 a minute over one share: 0.2 calls a second, the share holds 1.2.
    budget = FirestoreCallBudget(firestore_db, per_minute=12, shards=1, pick=lambda n: 0)
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert budget.take(OWNER, 1, now) is None
    written = _share(firestore_db, OWNER, 0)
    assert written.to_dict()["tokens"] == pytest.approx(0.2)
    allowed_at = budget.take(OWNER, 1, now)
    assert allowed_at == now + timedelta(seconds=4)  # 0.8 calls at 0.2 a second
    # Short: nothing written.
    assert _share(firestore_db, OWNER, 0).update_time == written.update_time
    assert budget.take(OWNER, 1, allowed_at - timedelta(seconds=1)) is not None
    assert budget.take(OWNER, 1, allowed_at) is None
    # Refilled for a long while: never more than the share holds.
    later = allowed_at + timedelta(hours=1)
    assert budget.take(OWNER, 1, later) is None
    assert _share(firestore_db, OWNER, 0).to_dict()["tokens"] == pytest.approx(0.2)


def test_concurrent_takes_never_spend_a_token_twice(firestore_db: Any) -> None:
    # One call a minute, one share: the share holds one call, and the test is too short
    # for a second to refill.
    budget = FirestoreCallBudget(firestore_db, per_minute=1, shards=1, pick=lambda n: 0)
    now = datetime.now(UTC)
    answers: list[datetime | None] = []
    lock = threading.Lock()

    def take() -> None:
        answer = budget.take(OWNER, 1, now)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8
    assert answers.count(None) == 1


def test_an_owners_takes_are_spread_over_its_shares(firestore_db: Any) -> None:
    picks = iter(range(100))
    budget = FirestoreCallBudget(firestore_db, per_minute=480, shards=16,
                                 pick=lambda n: next(picks) % n)
    now = datetime.now(UTC)
    for _ in range(32):
        assert budget.take(OWNER, 1, now) is None
    for share in range(16):
        # Each share written twice, holding its 3 calls less the two taken.
        assert _share(firestore_db, OWNER, share).to_dict()["tokens"] == pytest.approx(1.0)
    other = _share(firestore_db, "someone-else@example.com", 0)
    assert not other.exists


@dataclass
class Rig:
    harness: Harness
    worker: Worker
    queue: CloudTasksQueue
    calendar: CountingCalendar

    def request(self, generation: int) -> None:
        recorded = self.harness.store.record_sync_request(self.harness.sub.id,
                                                          datetime.now(UTC))
        assert recorded.needs_task and recorded.generation == generation
        self.queue.enqueue_sync(self.harness.sub.id, generation)
        self.harness.store.mark_queued(self.harness.sub.id, generation, datetime.now(UTC))

    def synced(self, generation: int) -> None:
        store, sub_id = self.harness.store, self.harness.sub.id
        wait_until(lambda: int(store.get_writer_state(sub_id).get("synced_gen") or 0)
                   >= generation and "listing" not in store.get_writer_state(sub_id),
                   90, f"sync {generation} to complete (runs so far: {self.worker.outcomes})")


def _rig(firestore_db: Any, calendar: Any, tasks_emulator: str, tasks_queue: str,
         per_minute: int) -> Iterator[Rig]:
    _, project, _, region, _, queue_id = tasks_queue.split("/")
    calendar.control.add_user(OWNER)
    harness = Harness(firestore_db, calendar, OWNER, page_size=PAGE, sub_id="sub-budget")
    worker = Worker(harness)
    server = serve(worker)
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
        budget=FirestoreCallBudget(firestore_db, per_minute=per_minute, shards=1))
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
