"""A calendar larger than one run may do completes over several tasks (DESIGN.md,
"Syncs: requests, runs, fencing"; issue 19 item 5).

A run begins no new page once its time budget (`SyncSettings.run_budget`,
CALSYNC_RUN_BUDGET_SECONDS) is spent: it saves its page token with the pages
committed so far (fenced) and queues a follow-up task that goes on from there.
Here the budget is so small that every run does one page (or one reconciliation
batch), and the tasks go through the real Cloud Tasks emulator (with the name
rule production enforces, `NameRuleClient`) to a worker served over HTTP. The
calendar is listed exactly once in all (never again from the top), every event is
exactly once in the feed, and the sync token is committed only by the last run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.adapters.google.tasks import CloudTasksQueue, build_client
from functions.config import Settings
from functions.model import EventPage, Subscription
from functions.ports import CalendarPort
from functions.sync.engine import SyncEngine, SyncReport, SyncSettings
from tests.e2e.conftest import wait_until
from tests.faults.serving import serve_worker
from tests.faults.tasks import NameRuleClient

from .harness import Harness

USER = "continuation@example.com"
PAGE = 5
BUDGET = 1e-6  # seconds: spent by the first page, so every run does one page


class CountingCalendar(CalendarPort):
    """The real adapter; remembers every page token it was asked for."""

    def __init__(self, inner: CalendarPort) -> None:
        self.inner = inner
        self.page_tokens: list[str | None] = []

    def list_page(self, subscription: Subscription, *, sync_token: str | None,
                  page_token: str | None, page_size: int) -> EventPage:
        self.page_tokens.append(page_token)
        return self.inner.list_page(subscription, sync_token=sync_token,
                                    page_token=page_token, page_size=page_size)


@dataclass
class Worker:
    """The sync engine behind an HTTP address; records each run's outcome and the
    sync token `state/writer` held right after it."""

    harness: Harness
    engine: SyncEngine | None = None
    outcomes: list[str] = field(default_factory=list)
    tokens_after: list[tuple[str, str | None]] = field(default_factory=list)

    def run(self, sub_id: str) -> SyncReport:
        assert self.engine is not None
        report = self.engine.run(sub_id)
        self.outcomes.append(report.outcome.value)
        token = self.harness.store.get_writer_state(sub_id).get("sync_token")
        self.tokens_after.append((report.outcome.value, token))
        return report


@dataclass
class Rig:
    harness: Harness
    worker: Worker
    queue: CloudTasksQueue
    calendar: CountingCalendar

    def request(self, generation: int) -> None:
        """What the webhook does: record a request and queue its task."""
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


@pytest.fixture
def rig(firestore_db: Any, calendar: Any, tasks_emulator: str,
        tasks_queue: str) -> Iterator[Rig]:
    _, project, _, region, _, queue_id = tasks_queue.split("/")
    calendar.control.add_user(USER)
    harness = Harness(firestore_db, calendar, USER, page_size=PAGE, sub_id="sub-continued")
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
                     run_budget=BUDGET, reconcile_batch=4))
    try:
        yield Rig(harness, worker, queue, counting)
    finally:
        server.shutdown()
        server.server_close()


def _calendar(harness: Harness) -> list[str]:
    """Single events and recurring series (one with a changed instance)."""
    ids = [harness.insert(f"single {i}", day=i)["id"] for i in range(17)]
    weekly = harness.insert_series("weekly", count=6, day=2)
    ids.append(weekly["id"])
    ids.append(harness.insert_series("daily", count=4, day=9)["id"])
    moved = harness.instances(weekly["id"])[2]
    harness.patch(moved["id"], summary="weekly, moved")
    ids.append(moved["id"])
    return ids


def test_a_calendar_larger_than_one_run_completes_over_several_tasks(rig: Rig) -> None:
    harness = rig.harness
    ids = _calendar(harness)
    pages = -(-len(ids) // PAGE)
    assert pages >= 4

    before_listing = datetime.now(UTC)
    rig.request(1)
    rig.synced(1)

    # The watermark is when the listing began, in the first run, not when the last
    # run (which listed only the last page) began: every change made during the
    # first runs may be in pages already listed, and missing until the next sync.
    writer = harness.store.get_writer_state(harness.sub.id)
    watermark = writer["complete_as_of"]
    assert before_listing <= watermark < writer["lease_started_at"]
    assert watermark < writer["synced_at"]

    # One run per page, each after the previous one's task: the listing went on from
    # each saved page token, never again from the top.
    assert rig.worker.outcomes == ["continued"] * (pages - 1) + ["synced"]
    assert rig.calendar.page_tokens[0] is None
    assert None not in rig.calendar.page_tokens[1:]
    assert len(rig.calendar.page_tokens) == len(set(rig.calendar.page_tokens)) == pages
    # The token moves only with its data: none until the last run committed.
    assert [token for _, token in rig.worker.tokens_after[:-1]] == [None] * (pages - 1)
    assert rig.worker.tokens_after[-1][1] is not None
    # Every event exactly once in the feed, the snapshots equal the listing.
    entries = harness.check()
    assert sorted(e.event_id for e in entries) == sorted(ids)
    assert {e.kind for e in entries} == {"created"}


def test_a_full_resync_reconciles_deletions_over_several_tasks(rig: Rig) -> None:
    harness = rig.harness
    ids = _calendar(harness)
    rig.request(1)
    rig.synced(1)
    before = len(harness.check())
    gone = ids[3:12:2]  # five single events, spread over the id order
    for event_id in gone:
        harness.delete(event_id)
    added = harness.insert("after the first sync", day=20)["id"]

    runs = len(rig.worker.outcomes)
    harness.store.request_full_resync(harness.sub.id)
    rig.request(2)
    rig.synced(2)

    later = rig.worker.outcomes[runs:]
    assert later[-1] == "synced" and later.count("continued") >= 2, later
    assert [token for outcome, token in rig.worker.tokens_after[runs:-1]] == [
        rig.worker.tokens_after[runs - 1][1]] * (len(later) - 1)  # the old one, unmoved
    entries = harness.check()[before:]
    assert sorted((e.kind, e.event_id) for e in entries) == sorted(
        [("deleted", event_id) for event_id in gone] + [("created", added)])
