"""Issue 21, item 1: rows the renewer cannot act on must not keep the head of its
queries. Each test puts more stuck rows in front than one run may read (batch 2:
at most 10 rows read per section and run) and proves the rows behind them are
served: other watches retried, healthy channels renewed before they expire,
stranded requests re-queued, the safety net reaching healthy subscriptions."""

from __future__ import annotations

from datetime import timedelta

from functions.errors import CalendarUnavailable
from tests.unit.lifecycle.world import World

STUCK = 12  # more than the 10 rows a batch-2 run reads per section


def test_watches_that_keep_failing_do_not_starve_other_retries() -> None:
    world = World()
    for n in range(STUCK):  # calendars Google refuses to watch (a holiday calendar)
        world.watches.refused[f"holiday-{n}"] = CalendarUnavailable("watch refused")
        sub_id = world.subscribe(f"holiday-{n}")
        world.served(sub_id)
        assert not world.service.ensure_channel(world.sub(sub_id))
    world.advance(seconds=1)
    good = []
    for n in range(2):  # their first watch failed once, later ones work
        sub_id = world.subscribe(f"cal-{n}")
        world.served(sub_id)
        world.watches.failures = 1
        assert not world.service.ensure_channel(world.sub(sub_id))
        good.append(sub_id)
    for _ in range(10):
        world.advance(minutes=1)
        world.renewer(batch=2).run()
    for sub_id in good:
        assert [c.state for c in world.db.delivering_channels(sub_id)] == ["active"]


def test_renewals_that_keep_failing_do_not_starve_healthy_channels() -> None:
    world = World()
    for n in range(STUCK):
        world.with_channel(f"broken-{n}")  # delegation broken since: renewals fail
        world.watches.refused[f"broken-{n}"] = CalendarUnavailable("token refused")
    world.advance(minutes=1)
    healthy = [world.with_channel(f"cal-{n}") for n in range(2)]
    world.advance(days=6, hours=1)  # all of them inside the one-day renewal window
    for _ in range(30):
        world.renewer(batch=2).run()
        world.advance(minutes=5)
    for sub_id, first in healthy:
        assert world.states(sub_id)[first] in ("replaced", "stopped")
        [current] = world.db.delivering_channels(sub_id)
        assert current.state == "active" and current.expiration is not None
        assert current.expiration > world.clock[0] + timedelta(days=6)


def test_requests_whose_runs_keep_failing_do_not_starve_the_safety_net() -> None:
    world = World()
    for n in range(STUCK):
        sub_id = world.subscribe(f"failing-{n}")
        world.stuck(sub_id, claimed_gen=0, synced_gen=0)
    world.advance(minutes=1)
    healthy = []
    for n in range(2):
        sub_id = world.subscribe(f"quiet-{n}")
        world.served(sub_id)
        healthy.append(sub_id)
    world.advance(hours=1, minutes=5)  # past the safety-net interval for all of them
    for _ in range(4):
        world.renewer(batch=2).run()
        world.advance(seconds=30)
    for sub_id in healthy:
        assert (2, "safety") in world.queue.of(sub_id), world.queue.of(sub_id)


def test_requests_held_by_long_runs_do_not_starve_stranded_ones() -> None:
    world = World()
    for n in range(STUCK):  # full syncs of huge calendars: leases held for an hour,
        sub_id = world.subscribe(f"huge-{n}")  # and a change noted meanwhile
        world.db.subs[sub_id]["requested_gen"] = 2
        world.stuck(sub_id, claimed_gen=1, lease_until=world.clock[0] + timedelta(hours=1),
                    lease_started_at=world.clock[0])
    world.advance(seconds=1)
    stranded = world.subscribe("stranded")  # its task was lost: only the sweep serves it
    world.queue.tasks.clear()
    world.advance(minutes=3)
    for _ in range(4):
        world.renewer(batch=2).run()
        world.advance(seconds=30)
    origins = [origin for _, origin in world.queue.of(stranded)]
    assert origins and all(o.startswith("sweep") for o in origins), world.queue.tasks
