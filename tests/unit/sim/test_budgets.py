"""Quota-aware dispatch in the simulation (issue 19 item 2; DESIGN.md, "Budgets"):
the project's and each owner's Calendar calls stay within CALSYNC_PROJECT_CALLS_PER_
MINUTE and CALSYNC_USER_CALLS_PER_MINUTE (plus the tenth a full bucket adds) in a
burst after an outage, every subscription wanting a sync at once, with an owner of
1,000 calendars (more than Google's 600 a minute per user) whose channels all come
due for renewal in that same burst. Runs over budget are deferred to slots their
owner's budget books (each comes back once, not in a herd) and renewals left to a
later run; none fails, nothing spins, and everything is synced and renewed inside
the renewal window."""

from __future__ import annotations

import random
from datetime import timedelta

from functions.model import ACTIVE
from functions.sync.budget import BURST_SHARE
from infra.sim.workload import WorkloadModel, sample
from infra.sim.world import World, WorldConfig

OUTAGE_END = 1800.0


def test_a_burst_with_an_owner_of_a_thousand_calendars_stays_within_the_budgets() -> None:
    model = WorkloadModel(admin_share=0.5, admin_calendars=1000, quiet_share=0.5)
    population = sample(model, 2000, 1.0, random.Random(7))
    owners = population.owners()
    big = max(owners, key=lambda owner: owners[owner])
    assert owners[big] == 1000
    world = World(population, model, WorldConfig(seed=7))
    world.seed()
    settings = world.config.settings
    subs = sorted(world.db.subs)
    # A renewal peak in the burst: every channel of the big owner is due at once.
    due = world.clock.start + timedelta(seconds=OUTAGE_END + settings.renewal_window / 2)
    for channel_id, channel in list(world.db.channels.items()):
        if world.db.subs[channel["sub_id"]]["owner"] == big:
            world.db.set_channel_fields(channel_id, {"expiration": due})

    def outage_over() -> None:
        for sub_id in subs:  # e.g. the webhook's queue was down: the sweep re-queues all
            world.subscriptions.request_sync(sub_id, origin="outage")

    world.loop.at(OUTAGE_END, outage_over)
    # Long enough for the big owner's renewals at its budget: one per share per tick.
    world.run(days=0.3)

    calls = world.calendar.calls
    assert calls.refused.total == 0, calls.refusals_by_reason
    user_cap = settings.user_calls_per_minute * (1 + 1 / BURST_SHARE)
    hottest, peak = calls.hottest_user()
    assert hottest == big and peak <= user_cap < world.config.user_quota
    assert max(calls.requests.per_minute()) <= settings.project_calls_per_minute
    # The budget acted: runs were deferred and renewals left for later ...
    assert world.sync_outcomes["deferred"] > 0
    assert world.renewer_totals["over_budget"] > 0
    # ... and nothing failed or spun: every request synced, every channel renewed.
    assert "failed" not in world.sync_outcomes and "transient" not in world.sync_outcomes
    assert world.queue.retried == 0
    for sub_id in subs:
        writer = world.db.writers[sub_id]
        assert int(writer["synced_gen"]) >= int(world.db.subs[sub_id]["requested_gen"])
    assert sum(world.sync_outcomes.values()) < 3 * len(subs)
    assert world.renewer_totals["renewed"] >= owners[big]
    for channel in world.db.channels.values():  # renewed inside the window: none lapsed
        if channel["state"] == ACTIVE:
            assert channel["expiration"] > due
