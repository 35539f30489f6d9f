"""The simulation's counters count: known tiny scenarios give known counts.

First the store alone (each method reads and writes what the Firestore adapter
reads and writes), then a world of one calendar with one change, which must cost
one push, one task, one run, one `events.list`, one feed entry.
"""

from __future__ import annotations

import random
from datetime import timedelta

from functions.model import ChangeDraft, EventWrite, LeaseOutcome
from infra.sim.calendar import PushFaults
from infra.sim.clock import VirtualClock
from infra.sim.cost import load_prices
from infra.sim.database import SimDatabase
from infra.sim.report import figures
from infra.sim.stores import SimStore
from infra.sim.workload import Population, SimCalendar, WorkloadModel
from infra.sim.world import World, WorldConfig

SUB = "subscriptions/s1"
WRITER = "subscriptions/s1/state/writer"


def test_the_store_bills_reads_and_writes_per_document() -> None:
    clock = VirtualClock()
    db = SimDatabase(lambda: clock.t)
    db.io.enabled = False
    db.subs["s1"] = {"calendar_id": "c", "owner": "o", "status": "active", "requested_gen": 1}
    db.writers["s1"] = {}
    db.io.enabled = True
    store = SimStore(db, outbox=True)
    now = clock.now()

    attempt = store.acquire_lease("s1", now, now + timedelta(minutes=2))
    assert attempt.outcome is LeaseOutcome.ACQUIRED and attempt.lease is not None
    assert (db.io.reads.total, db.io.writes.total) == (2, 1)  # sub + writer read; writer set

    clock.t = 30.0
    writes = [EventWrite("e1", {"id": "e1", "etag": '"1"'},
                         ChangeDraft("created", "e1", {"summary": {"before": None,
                                                                   "after": "x"}}, '"1"')),
              EventWrite("e2", {"id": "e2", "etag": '"2"'})]
    entries = store.commit_page(attempt.lease, writes, clock.now(), clock.now())
    assert [e["seq"] for e in entries] == [1]
    # One fenced read of the writer; the entry, two snapshots and the writer written.
    assert (db.io.reads.total, db.io.writes.total) == (3, 5)
    assert db.io.reads_by_path == {SUB: 1, WRITER: 2}
    assert {p: r.total for p, r in db.io.writes_by_path.items()} == {
        WRITER: 2, "subscriptions/s1/changes/00000000000000000001": 1,
        "subscriptions/s1/events/e1": 1, "subscriptions/s1/events/e2": 1}
    assert db.writers["s1"]["publish_pending_since"] == clock.now()  # the outbox's mark

    clock.t = 61.0
    store.commit_final(attempt.lease, "token", clock.now())
    assert db.io.writes.total == 7  # writer and subscription
    assert db.io.hottest() == (WRITER, 2, 1)  # two writes in its busiest minute (0-59 s)
    assert db.io.writes.per_minute(0, 120) == [5, 2]
    assert db.io.reads_by_collection()["state"] == 3
    assert db.io.writes_by_collection()["events"] == 2

    assert store.load_snapshots("s1", ["e1", "missing"])["missing"] is None
    assert db.io.reads.total == 7  # a batch get bills every document asked for
    assert store.list_changes("s1", 0, 10).next_cursor == 1


def _one_calendar_world(push: PushFaults) -> World:
    model = WorkloadModel(events_per_calendar=2)
    population = Population([SimCalendar("cal@sim.example", "owner@sim.example", 0.0)], 1)
    world = World(population, model, WorldConfig(push=push, sync_token_410_rate=0.0))
    world.seed()
    # Synced just now: the safety net is not due during the test.
    world.db.subs["sub0000000"]["last_synced_at"] = world.clock.now()
    world.db.subs["sub0000000"]["safety_net_at"] = world.clock.now()
    world.db.touch_sub("sub0000000")
    return world


def test_one_change_costs_one_push_one_task_one_run_one_listing() -> None:
    world = _one_calendar_world(PushFaults(latency_seconds=1.0))
    world.loop.at(100.0, world.calendar.write_event, "cal@sim.example")
    world.run(days=600 / 86400, drain=0)

    assert world.calendar.pushes["sent"] == 1
    assert dict(world.webhook_results) == {"queued": 1}
    assert world.queue.created.total == 1 and world.queue.dispatches.total == 1
    assert dict(world.sync_outcomes) == {"synced": 1}
    assert world.calendar.calls.by_method == {"events.list": 1}
    assert world.calendar.calls.requests.total == 1
    assert world.publisher.messages.total == 1
    entries = world.db.changes["sub0000000"]
    assert [(e["seq"], e["kind"]) for e in entries.values()] == [(3, "created")]
    # Made at 100 s, in the feed once the push arrived and the task ran (same instant).
    assert len(world.probe.samples) == 1 and world.probe.unresolved() == 0
    push_delay = world.probe.samples[0]
    assert 0 < push_delay < 60
    # Every tick of terraform's renewal_schedule (every 5 minutes), 0 s to 600 s.
    assert world.config.renewer_period == 300.0
    assert world.renewer_runs == 3
    writes = world.db.io.writes_by_path
    assert writes["subscriptions/sub0000000/changes/00000000000000000003"].total == 1
    assert writes["subscriptions/sub0000000/events/" + entries[3]["event_id"]].total == 1
    assert world.db.io.reads.total > 0 and world.db.io.writes.total > 3


def test_a_dropped_push_costs_nothing_until_the_safety_net() -> None:
    world = _one_calendar_world(PushFaults(drop=1.0))
    world.loop.at(100.0, world.calendar.write_event, "cal@sim.example")
    world.run(days=600 / 86400, drain=0)
    assert world.calendar.pushes == {"sent": 1, "dropped": 1, "duplicated": 0, "late": 0,
                                     "expired": 0}
    assert world.calendar.calls.requests.total == 0 and world.queue.dispatches.total == 0
    assert world.probe.unresolved() == 1 and not world.probe.samples
    # Not in the feed when the run ends: the maximum counts it as old as it then was.
    result = figures(world, 600 / 86400, 1.0, 1, load_prices())
    assert result.staleness_max == 500.0 and result.unresolved == 1


def test_rates_are_drawn_the_same_at_every_size() -> None:
    model = WorkloadModel()
    small = [model.rate(random.Random(i)) for i in range(2000)]
    assert abs(sum(r == 0 for r in small) / 2000 - model.quiet_share) < 0.05
    assert max(small) <= model.max_rate
