"""The workload model says what it does: the rates its docstring states, and samples of
whole owners whose share is what the scaling divides by."""

from __future__ import annotations

import random
import statistics

from infra.sim.workload import WorkloadModel, sample


def test_rates_follow_the_stated_law() -> None:
    model = WorkloadModel()
    rng = random.Random(11)
    rates = [model.rate(rng) for _ in range(100_000)]
    changing = [r for r in rates if r > 0]
    assert abs(len(changing) / len(rates) - 0.5) < 0.01  # half the calendars are quiet
    assert abs(statistics.median(changing) - 2.0 * 2 ** 0.9) < 0.1  # ~3.7 a day
    assert 10.5 < statistics.fmean(changing) < 12.8  # ~11.6 a day
    assert max(rates) == model.max_rate
    top = sorted(changing)[-len(changing) // 1000:]
    assert min(top) > 900  # the busiest 0.1 % change ~1,000 times a day or more


def test_the_diurnal_curve_averages_one() -> None:
    model = WorkloadModel()
    hours = [model.diurnal(h * 3600.0) for h in range(24)]
    assert abs(statistics.fmean(hours) - 1.0) < 1e-9
    assert max(hours) == model.diurnal(model.peak_hour_utc * 3600.0) == 1.5


def test_a_full_population_has_the_admin_owner_with_many_calendars() -> None:
    population = sample(WorkloadModel(), 10_000, 1.0, random.Random(2))
    owners = population.owners()
    assert len(population.calendars) == 10_000 and population.share == 1.0
    assert max(owners.values()) == 500  # 5 % of 10,000 behind one resource admin
    people = [n for owner, n in owners.items() if owner.startswith("user")]
    assert 1.2 < statistics.fmean(people) < 1.3


def test_a_sample_takes_whole_owners_and_reports_its_share() -> None:
    full = 1_000_000
    population = sample(WorkloadModel(), full, 0.02, random.Random(3))
    owners = population.owners()
    admins = [n for owner, n in owners.items() if owner.startswith("rooms")]
    assert admins == [500, 500]  # 2 % of the 100 admins, each whole
    assert abs(population.share - 0.02) < 0.0005
    assert population.share == len(population.calendars) / full
