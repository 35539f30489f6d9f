"""The adaptive safety net (issue 19 item 3; DESIGN.md, "Staleness bound"), through the
real renewer, queue, worker and store of the simulation.

A subscription's probe interval doubles while its probes find nothing that
notifications had not already delivered, up to CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS
(the published bound); it drops to CALSYNC_SAFETY_NET_INTERVAL_SECONDS after a probe
that found a missed change, and stays there while the channel is unhealthy. So a quiet
calendar costs a listing a day plus its renewals, and a change with every push lost
still reaches the feed within the bound.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from infra.calendar_emulator.errors import injected
from infra.sim.calendar import PushFaults
from infra.sim.cost import load_prices
from infra.sim.report import figures
from infra.sim.workload import Population, SimCalendar, WorkloadModel, sample
from infra.sim.world import World, WorldConfig, sim_settings

SHORTEST, LONGEST = 21600, 86400  # the code's default, terraform's default
SUB = "sub0000000"


def _intervals(world: World) -> list[tuple[str, float, int]]:
    """Every `net_interval` the renewer writes: (subscription, time, seconds)."""
    seen: list[tuple[str, float, int]] = []
    update = world.db.update_sub

    def noting(sub_id: str, fields: dict[str, Any]) -> None:
        if "net_interval" in fields:
            seen.append((sub_id, world.clock.t, int(fields["net_interval"])))
        update(sub_id, fields)

    world.db.update_sub = noting  # type: ignore[method-assign]
    return seen


def _one_quiet_calendar(push: PushFaults, *, fresh: bool) -> World:
    """One calendar that changes only when a test says so, in the steady state (its
    interval at the longest), or `fresh`: covered just now at the shortest."""
    model = WorkloadModel(events_per_calendar=2)
    population = Population([SimCalendar("cal@sim.example", "owner@sim.example", 0.0)], 1)
    world = World(population, model, WorldConfig(push=push, sync_token_410_rate=0.0))
    world.seed()
    data = world.db.subs[SUB]
    now = world.clock.now()
    data["last_synced_at"] = now
    if fresh:
        data.update(net_interval=SHORTEST, safety_net_at=now)
    else:
        data.update(net_interval=LONGEST, safety_net_at=now + timedelta(
            seconds=LONGEST - SHORTEST))
    world.db.touch_sub(SUB)
    return world


def test_the_settings_are_terraforms_and_the_bound_is_the_longest_interval() -> None:
    settings = sim_settings()
    assert (settings.safety_net_interval, settings.safety_net_longest) == (SHORTEST, LONGEST)
    world = _one_quiet_calendar(PushFaults(), fresh=False)
    assert world.config.staleness_bound == LONGEST + 300  # terraform's 5-minute tick


def test_probes_that_find_nothing_widen_the_interval_to_the_longest() -> None:
    world = _one_quiet_calendar(PushFaults(), fresh=True)
    seen = _intervals(world)
    world.run(days=3.0, drain=0)
    # Probes at 6 h, then 12 h later, then every 24 h: each clean, each widening.
    assert [s for _, _, s in seen] == [2 * SHORTEST, LONGEST]
    assert world.renewer_totals["net_found"] == 0
    listings = world.calendar.calls.by_method["events.list"]
    assert listings == 4  # at 6 h, 18 h, 42 h, 66 h: not the 12 a fixed 6 h would make
    assert world.db.subs[SUB]["net_interval"] == LONGEST


def test_a_probe_that_finds_a_missed_change_drops_the_interval_to_the_shortest() -> None:
    world = _one_quiet_calendar(PushFaults(drop=1.0), fresh=False)
    seen = _intervals(world)
    world.loop.at(100.0, world.calendar.write_event, "cal@sim.example")
    world.run(days=2.5, drain=0)
    assert world.renewer_totals["net_found"] == 1
    # Found at the probe a day in; then 6 h, 12 h, 24 h again while nothing is missed.
    assert [s for _, _, s in seen] == [SHORTEST, 2 * SHORTEST, LONGEST]
    found_at = seen[0][1]
    assert LONGEST - SHORTEST <= found_at <= LONGEST + SHORTEST + 120
    # The change waited for the probe, and no longer than the bound.
    [staleness] = world.probe.samples
    assert staleness <= world.config.staleness_bound
    assert world.probe.unresolved() == 0


def test_while_the_channel_is_unhealthy_probes_stay_at_the_shortest_interval() -> None:
    world = _one_quiet_calendar(PushFaults(), fresh=True)
    seen = _intervals(world)
    # Google refuses every watch (500): renewals fail, and the channel runs out.
    expires = world.clock.now() + timedelta(hours=2)
    world.db.subs[SUB]["channel_expiration"] = expires
    for channel_id in list(world.db.channels):
        world.db.set_channel_fields(channel_id, {"expiration": expires})

    def refuse(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise injected(500, "backendError", None)

    world.calendar.watch = refuse  # type: ignore[method-assign]
    world.run(days=1.5, drain=0)
    assert world.renewer_totals["failed"] > 0  # the renewals were tried
    # Never widened: the channel was due for renewal, then gone, at every look.
    assert not seen and world.db.subs[SUB]["net_interval"] == SHORTEST
    assert world.calendar.calls.by_method["events.list"] == 6  # every 6 h


def test_a_quiet_calendar_costs_at_most_one_and_a_half_calls_a_day() -> None:
    model = WorkloadModel(admin_share=0.0, quiet_share=1.0)
    population = sample(model, 300, 1.0, random.Random(11))
    world = World(population, model, WorldConfig(seed=11))
    world.seed()
    world.run(days=2.0)
    result = figures(world, 2.0, 0.0, 300, load_prices())
    assert result.quiet_calendars == 300
    # A listing a day (the longest interval) and the renewals (watch and stop a week).
    assert 1.0 <= result.quiet_calls_per_calendar_day <= 1.5
    assert result.quiet_calendars_under_billing_threshold >= 1_000_000 / 1.5


def test_a_quiet_calendar_is_looked_at_once_per_probe() -> None:
    """The renewer reads a quiet calendar's row once per probe: the probe sets when the
    next look is due and the run it queued leaves that in place (the next look judges
    this probe and probes again), instead of a second look a shortest interval after
    every probe only to move the row on."""
    world = _one_quiet_calendar(PushFaults(), fresh=False)
    world.run(days=3.0, drain=0)
    listings = world.calendar.calls.by_method["events.list"]
    assert listings == 3  # a probe a day
    assert world.renewer_totals["safety_net"] == 3
    assert world.renewer_totals["moved"] == 0  # no look that only moved the row
    assert world.db.subs[SUB]["net_interval"] == LONGEST
