"""A burst after an outage in the simulation: every subscription wants a sync at once
(issue 19 items 2 and 7). The sync queue's dispatch rate (terraform's
`local.sync_dispatches_per_second` from the call budget settings, 116/s of one call
each) is what holds the project's Calendar calls under Google's quota (10,000 a
minute), and the owner's budget an owner of 500 calendars under the per-user one
(600 a minute): no call is refused, and the burst drains in minutes. An owner of
more calendars than the per-user quota: tests/unit/sim/test_budgets.py."""

from __future__ import annotations

import random

from infra.sim.tasks import QueueConfig
from infra.sim.workload import WorkloadModel, sample
from infra.sim.world import World, WorldConfig

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
