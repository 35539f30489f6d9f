"""Who owns which calendars, and how often each calendar changes.

Owners (the account calsync acts as, whose per-user quota a calendar's calls
use): two kinds, because the per-user quota (600 requests per minute per
user per project) bites only where one account reads many calendars.

- People: each holds 1 + Geometric(`extra_calendar_p`) calendars (mean 1.25 by
  default): most subscribe their primary calendar, some a shared or secondary
  one or two. An assumption, chosen because a consumer app subscribes its
  users' own calendars.
- Resource admins: a share of all calendars (`admin_share`, 5 %) are resource
  calendars (rooms, equipment) that an organisation exposes through one
  account (domain-wide delegation impersonates one admin for all of them),
  `admin_calendars` (500) to an account. This is the owner with many
  calendars; an assumption sized on a large office's room list.

Change rates (changes per calendar per day, events created, updated or
deleted): `quiet_share` (50 %) of calendars do not change during the day;
the others follow Zipf's law in its rank-frequency form, rate =
`min_rate` x u^(-`zipf_exponent`) for u uniform in (0, 1], capped at `max_rate`
(a Pareto law with index 1/exponent). With the defaults (2/day, exponent 0.9,
cap 2,000/day) the median changing calendar sees ~3.7 changes a day, the
busiest 0.1 % ~1,000, the mean is ~11.6, about 5.8 over all calendars. Zipf
because activity across users is heavy-tailed in every comparable system
(mail, files, web requests); the parameters are assumptions, not
measurements: no public data on calendar change rates was found, which is
why each one is a command-line setting of `bench/scale.py`. Drawing u per
calendar (not by rank) makes the distribution the same at every size, which
is what lets a sample stand for the whole (see `sample`).

Over the day the rate follows a sine with amplitude `diurnal_amplitude`
(0.5: busiest hour 1.5x the mean, quietest 0.5x) peaking at `peak_hour_utc`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkloadModel:
    extra_calendar_p: float = 0.2
    admin_share: float = 0.05
    admin_calendars: int = 500
    quiet_share: float = 0.5
    min_rate: float = 2.0
    zipf_exponent: float = 0.9
    max_rate: float = 2000.0
    diurnal_amplitude: float = 0.5
    peak_hour_utc: float = 15.0
    update_share: float = 0.7
    create_share: float = 0.2  # the rest deletes
    events_per_calendar: int = 5  # at the start; small to keep memory flat

    def rate(self, rng: random.Random) -> float:
        """One calendar's changes per day."""
        if rng.random() < self.quiet_share:
            return 0.0
        u = 1.0 - rng.random()  # (0, 1]
        return min(self.min_rate * u ** (-self.zipf_exponent), self.max_rate)

    def diurnal(self, t: float) -> float:
        """The rate multiplier at `t` seconds into the (UTC) day; averages 1 over a day."""
        hours = (t / 3600.0) % 24.0
        return 1.0 + self.diurnal_amplitude * math.cos(
            2 * math.pi * (hours - self.peak_hour_utc) / 24.0)

    def next_change(self, rng: random.Random, t: float, per_day: float) -> float:
        """The next change after `t` of a calendar changing `per_day` times a day on
        average (a Poisson process thinned by the diurnal curve)."""
        top = per_day * (1.0 + self.diurnal_amplitude) / 86400.0
        while True:
            t += rng.expovariate(top)
            if rng.random() * (1.0 + self.diurnal_amplitude) <= self.diurnal(t):
                return t


@dataclass(frozen=True)
class SimCalendar:
    calendar_id: str
    owner: str
    rate: float  # changes per day
    admin: bool = False


@dataclass
class Population:
    """The calendars a run simulates and what share of the full size they are."""

    calendars: list[SimCalendar] = field(default_factory=list)
    full_size: int = 0

    @property
    def share(self) -> float:
        return len(self.calendars) / self.full_size if self.full_size else 1.0

    def owners(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for calendar in self.calendars:
            counts[calendar.owner] = counts.get(calendar.owner, 0) + 1
        return counts


def sample(model: WorkloadModel, full_size: int, fraction: float,
           rng: random.Random) -> Population:
    """The calendars of a run standing for `full_size` calendars: all of them when
    `fraction` is 1, else a uniform sample of owners (whole owners, so every
    sampled owner keeps all its calendars and its per-user quota sees exactly
    what it would): people owners until `fraction` of the people's calendars,
    and `fraction` of the resource admins, rounded (none in a sample too small to
    hold one of their size)."""
    fraction = min(max(fraction, 0.0), 1.0)
    admin_total = round(full_size * model.admin_share)
    people_total = full_size - admin_total
    population = Population(full_size=full_size)
    number = 0

    def add(owner: str, count: int, admin: bool) -> None:
        nonlocal number
        for _ in range(count):
            population.calendars.append(SimCalendar(
                f"cal{number:07d}@sim.example", owner, model.rate(rng), admin))
            number += 1

    if admin_total:
        admins = math.ceil(admin_total / model.admin_calendars)
        wanted = admins if fraction >= 1.0 else round(admins * fraction)
        for index in range(wanted):
            size = min(model.admin_calendars, admin_total - index * model.admin_calendars)
            add(f"rooms{index:04d}@sim.example", max(size, 1) if fraction >= 1.0
                else model.admin_calendars, True)
    people_target = people_total if fraction >= 1.0 else round(people_total * fraction)
    person = 0
    added = 0
    while added < people_target:
        count = 1
        while rng.random() < model.extra_calendar_p:
            count += 1
        count = min(count, people_target - added)
        add(f"user{person:07d}@sim.example", count, False)
        person += 1
        added += count
    return population
