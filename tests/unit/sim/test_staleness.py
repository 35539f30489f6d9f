"""The staleness bound, measured on the code as it is: a change made while every push
is lost reaches the feed within the safety-net interval plus one renewer run
(DESIGN.md, "Staleness bound"), through the real renewer, queue, worker and store."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest

from infra.sim.calendar import PushFaults
from infra.sim.cost import load_prices
from infra.sim.report import figures
from infra.sim.workload import WorkloadModel, sample
from infra.sim.world import World, WorldConfig, sim_settings

LINE = re.compile(
    r"^scale (\d+) calendars: quiet (\d+\.\d\d) calls/calendar/day, peak (\d+) calls/min "
    r"\(quota (\d+)\), hottest user (\d+) calls/min, staleness bound (\d+) s, max staleness "
    r"at 20% drop (\d+) s, hottest doc (\d+\.\d\d) writes/s$")


def _world(drop: float, overrides: dict[str, str] | None = None,
           calendars: int = 40) -> World:
    model = WorkloadModel(admin_share=0.0, quiet_share=0.3)
    population = sample(model, calendars, 1.0, random.Random(5))
    world = World(population, model, WorldConfig(settings=sim_settings(overrides),
                                                 push=PushFaults(drop=drop), seed=5))
    world.seed()
    world.run(days=1.0)
    return world


@pytest.mark.parametrize("drop", [1.0, 0.2])
def test_every_change_reaches_the_feed_within_the_bound(drop: float) -> None:
    world = _world(drop)
    bound = world.config.staleness_bound
    # CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS as terraform deploys it, and one tick of
    # terraform's renewal_schedule (every 5 minutes).
    assert bound == 86400 + 300
    probe = world.probe
    assert probe.made > 100 and probe.unresolved() == 0
    assert len(probe.samples) == probe.made
    assert max(probe.samples) <= bound
    if drop == 1.0:
        assert not world.webhook_results  # nothing was ever pushed: the safety net did it all
        assert max(probe.samples) > bound / 2  # and it took as long as it may


def test_the_bound_follows_the_settings() -> None:
    world = _world(1.0, {"CALSYNC_SAFETY_NET_INTERVAL_SECONDS": "1800",
                         "CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS": "3600"}, calendars=15)
    assert world.config.staleness_bound == 3900
    assert max(world.probe.samples) <= 3900 and world.probe.unresolved() == 0
    result = figures(world, 1.0, 1.0, 15, load_prices())
    match = LINE.match(result.line(max(world.probe.samples)))
    assert match, result.line()
    assert match.group(6) == "3900"
    assert result.quiet_calls_per_calendar_day > 24  # a listing an hour, and renewals


def test_the_published_bound_counts_the_queue_wait_beyond_the_nets_lead() -> None:
    """A probe is queued the net's lead before its row falls due: a sync queue that makes
    tasks wait longer than that (10^6 calendars' busiest minute: 43.8 s) delays it by
    the excess, and the summary line's bound says so."""
    world = _world(1.0, {"CALSYNC_SAFETY_NET_INTERVAL_SECONDS": "1800",
                         "CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS": "3600"}, calendars=15)
    result = figures(world, 1.0, 1.0, 15, load_prices())
    assert result.net_lead == 10.0  # the renewer's continuation delay
    for wait, bound in ((0.0, "3900"), (9.5, "3900"), (43.8, "3934")):
        waited = replace(result, queue={**result.queue, "max_wait_s": wait})
        match = LINE.match(waited.line(max(world.probe.samples)))
        assert match and match.group(6) == bound, (wait, waited.line())
    # The longest wait of another run of the size (another drop rate) counts too.
    match = LINE.match(result.line(max(world.probe.samples), queue_wait=70.0))
    assert match and match.group(6) == "3960"
