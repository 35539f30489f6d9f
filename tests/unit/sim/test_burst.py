"""A burst after an outage in the simulation: every subscription wants a sync at once
(issue 19 items 2 and 7). The sync queue's dispatch rate (terraform's
`local.sync_dispatches_per_second` from the call budget settings, 116/s of one call
each) is what holds the project's Calendar calls under Google's quota (10,000 a
minute), and the owner's budget an owner of 500 calendars under the per-user one
(600 a minute): no call is refused, and the burst drains in minutes. An owner of
more calendars than the per-user quota: tests/unit/sim/test_budgets.py."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

from functions.config import sync_dispatches_per_second
from infra.sim.tasks import QueueConfig
from infra.sim.workload import WorkloadModel, sample
from infra.sim.world import World, WorldConfig, sim_settings

OUTAGE_END = 1800.0


def test_every_subscription_at_once_stays_under_the_quotas() -> None:
    model = WorkloadModel(admin_share=0.3, admin_calendars=500, quiet_share=0.5)
    population = sample(model, 1500, 1.0, random.Random(3))
    owners = population.owners()
    assert max(owners.values()) >= 400  # an owner of many calendars is in the burst
    world = World(population, model, WorldConfig(queue=QueueConfig.from_terraform(), seed=3))
    world.seed()
    subs = sorted(world.db.subs)

    def outage_over() -> None:
        for sub_id in subs:  # e.g. the webhook's queue was down: the sweep re-queues all
            world.subscriptions.request_sync(sub_id, origin="outage")

    world.loop.at(OUTAGE_END, outage_over)
    world.run(days=0.1)
    calls = world.calendar.calls
    assert calls.refused.total == 0, calls.refusals_by_reason
    burst = calls.requests.per_minute(OUTAGE_END, OUTAGE_END + 600)
    assert sum(burst) >= len(subs)  # every subscription listed in the ten minutes after
    assert max(burst) <= world.config.project_quota
    _, hottest = calls.hottest_user()
    assert hottest <= world.config.user_quota
    assert world.queue.max_wait < 60  # dispatched within a minute of being due


def test_a_burst_with_every_channel_due_stays_within_the_project_budget() -> None:
    """Every minute within CALSYNC_PROJECT_CALLS_PER_MINUTE itself, not only under
    Google's quota, with every subscription wanting a sync and every channel due for
    renewal in the same minutes: the queue's rate leaves room for its largest burst
    (Cloud Tasks holds up to 500 tasks on top of the rate) and the renewer, running
    without fan-out, starts at most CALSYNC_RENEWALS_PER_MINUTE a minute. A budget of
    1,500 a minute with 140 renewals puts 1,500 subscriptions against it; before,
    the queue's 20 a second plus one second's burst, and renewals at the renewer's
    batch of 200 a run, took more than the budget in the burst's minutes."""
    model = WorkloadModel(admin_share=0.0, quiet_share=0.5)
    population = sample(model, 1500, 1.0, random.Random(5))
    settings = replace(sim_settings(), project_calls_per_minute=1500, renewals_per_minute=140)
    rate = sync_dispatches_per_second(1500, 140, settings.calls_per_task)
    queue = replace(QueueConfig.from_terraform(), max_dispatches_per_second=float(rate))
    world = World(population, model, WorldConfig(settings=settings, queue=queue, seed=5))
    world.seed()
    # Every channel comes due for renewal as the outage ends.
    expiring = world.clock.start + timedelta(seconds=OUTAGE_END + settings.renewal_window)
    for channel_id in list(world.db.channels):
        world.db.set_channel_fields(channel_id, {"expiration": expiring})
    subs = sorted(world.db.subs)

    def outage_over() -> None:
        for sub_id in subs:
            world.subscriptions.request_sync(sub_id, origin="outage")

    world.loop.at(OUTAGE_END, outage_over)
    world.run(days=0.1)
    calls = world.calendar.calls
    assert world.renewer_totals["renewed"] >= len(subs)  # the renewal peak happened
    assert calls.requests.between(OUTAGE_END, OUTAGE_END + 600) >= len(subs)  # the burst too
    assert max(calls.requests.per_minute()) <= settings.project_calls_per_minute
