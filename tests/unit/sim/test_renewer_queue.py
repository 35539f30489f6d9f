"""The renewer's own tasks in the simulation: they go to the renewer's queue, with
terraform's rules for it, and a tick with CALSYNC_RENEWAL_SHARDS > 1 fans channel
renewal out to one task per shard, each served as `entrypoints.renew_channels`
serves it (the body says which job)."""

from __future__ import annotations

import random
from pathlib import Path

from infra.sim.tasks import QueueConfig, terraform_defaults
from infra.sim.workload import WorkloadModel, sample
from infra.sim.world import World, WorldConfig, sim_settings

ROOT = Path(__file__).resolve().parents[3]


def test_the_renewer_queue_is_terraforms() -> None:
    config = QueueConfig.renewer_from_terraform()
    shards = terraform_defaults(ROOT / "terraform" / "variables.tf")["renewal_shards"]
    assert config.max_dispatches_per_second == float(shards)
    # tasks.tf: three attempts, 10 s to 60 s apart, for at most ten minutes.
    assert (config.max_attempts, config.min_backoff, config.max_backoff,
            config.max_retry_duration) == (3, 10.0, 60.0, 600.0)


def _world(shards: int) -> World:
    model = WorkloadModel(admin_share=0.0, quiet_share=0.5)
    population = sample(model, 60, 1.0, random.Random(7))
    settings = sim_settings({"CALSYNC_RENEWAL_SHARDS": str(shards)})
    world = World(population, model, WorldConfig(settings=settings, seed=7))
    world.seed()
    world.run(days=1.0)
    return world


def test_sharded_renewal_runs_from_the_renewer_queue() -> None:
    world = _world(4)
    renewer = world.renewer_totals
    jobs = world.renewer_jobs
    assert renewer["fanned_out"] == 4 * jobs["tick"]  # one task per shard per tick
    assert jobs["shard"] >= renewer["fanned_out"]  # each ran (and some continued)
    assert renewer["renewed"] > 0 and renewer["failed"] == 0
    # The shard tasks went to the renewer's queue, none to the sync queue.
    assert world.renewer_queue.dispatches.total >= renewer["fanned_out"]
    assert world.queue.dispatches.total == sum(world.worker_status.values())
    assert world.calendar.pushes["expired"] == 0  # every channel renewed in time
    assert world.probe.unresolved() == 0


def test_without_fan_out_the_tick_renews_and_the_renewer_queue_stays_idle() -> None:
    world = _world(1)
    assert world.renewer_totals["renewed"] > 0 and world.renewer_totals["fanned_out"] == 0
    assert world.renewer_queue.dispatches.total == 0  # no continuation was needed
    assert world.calendar.pushes["expired"] == 0
