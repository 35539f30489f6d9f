"""The figures of one simulated run, scaled to the full size it stands for.

A sampled run simulates `share` of the calendars with the project's Calendar
quota and the queue's dispatch rate scaled by `share`. Figures scale back up as:

- the renewer's batch (rows tried, and read, per section and run) is scaled by
  `share` too (`World.renewer_batch`), so its work per run keeps the same
  proportion to the rows due as at full size;
- per calendar (calls per quiet calendar, staleness), per user (the hottest
  owner: owners are sampled whole) and per document (the hottest document:
  each belongs to one subscription or channel): as measured, unscaled;
- project totals and rates (Calendar calls, quota errors, dispatches,
  Firestore reads and writes, Pub/Sub): divided by `share`. For totals this
  is exact in expectation (calendars are independent and identically
  drawn). For peaks it overstates: a sample's peak minute has relatively
  larger random swings than the whole's (they shrink as 1/sqrt(size)), so
  a scaled-up peak is an upper estimate; the diurnal swing, which all
  calendars share, scales exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.sim.cost import DailyUsage, MonthlyCost, monthly_cost
from infra.sim.probe import percentile
from infra.sim.world import DAY, World

BILLING_THRESHOLD = 1_000_000  # Calendar requests per project per day (calendar-api.md)


@dataclass
class Figures:
    size: int
    simulated: int
    share: float
    days: float
    drop: float
    staleness_bound: float
    project_quota: int
    calls_per_day: float
    calls_by_method: dict[str, float]
    peak_calls_per_minute: float
    peak_minute_at: int  # virtual seconds: the peak minute's start
    peak_minute_by_method: dict[str, float]  # what it was made of (scaled)
    hottest_user_per_minute: int
    hottest_user_calendars: int
    quota_errors_per_day: float
    quota_errors_by_reason: dict[str, float]
    dispatches_per_second: float
    peak_dispatches_per_second: float
    reads_per_second: float
    peak_reads_per_second: float
    writes_per_second: float
    peak_writes_per_second: float
    hottest_doc: str
    hottest_doc_writes_per_second: float
    hottest_doc_peak_second: int
    staleness_samples: int
    staleness_p50: float
    staleness_p99: float
    staleness_max: float
    unresolved: int
    quiet_calendars: int
    quiet_calls_per_calendar_day: float
    calls_per_calendar_day: float
    changes_per_calendar_day: float
    pushes: dict[str, float]
    webhook_results: dict[str, float]
    sync_outcomes: dict[str, float]
    renewer: dict[str, float]
    queue: dict[str, float]
    usage: DailyUsage
    cost: MonthlyCost
    log_lines: dict[str, int] = field(default_factory=dict)
    net_lead: float = 0.0  # the safety net's lead (WorldConfig.net_lead)

    def published_bound(self, queue_wait: float | None = None) -> float:
        """The staleness bound this run shows: the safety net's longest interval plus
        one renewer tick, plus the sync queue's longest wait beyond the net's lead (a
        probe queued a lead before its row falls due runs in time only if the queue
        dispatches it within the lead; at 10^6 calendars its busiest minute made
        tasks wait 43.8 s). `queue_wait`: the longest wait to count (default this
        run's), e.g. the longest of every drop rate's run of one size."""
        wait = self.queue.get("max_wait_s", 0.0) if queue_wait is None else queue_wait
        return self.staleness_bound + max(0.0, wait - self.net_lead)

    @property
    def calendars_under_billing_threshold(self) -> int:
        if self.calls_per_calendar_day <= 0:
            return 0
        return int(BILLING_THRESHOLD / self.calls_per_calendar_day)

    @property
    def calendars_under_minute_quota(self) -> int:
        """Calendars whose busiest minute stays under the project's per-minute quota, at
        the measured peak calls per minute per calendar."""
        if self.peak_calls_per_minute <= 0:
            return 0
        return int(self.project_quota / (self.peak_calls_per_minute / self.size))

    @property
    def quiet_calendars_under_billing_threshold(self) -> int:
        if self.quiet_calls_per_calendar_day <= 0:
            return 0
        return int(BILLING_THRESHOLD / self.quiet_calls_per_calendar_day)

    @property
    def cost_per_1000(self) -> float:
        return self.cost.total / (self.size / 1000.0)

    def line(self, max_at_20: float | None = None, queue_wait: float | None = None) -> str:
        """The one line other tools read (issue 19); its bound is `published_bound`."""
        worst = self.staleness_max if max_at_20 is None else max_at_20
        return (f"scale {self.size} calendars: quiet {self.quiet_calls_per_calendar_day:.2f} "
                f"calls/calendar/day, peak {self.peak_calls_per_minute:.0f} calls/min "
                f"(quota {self.project_quota}), hottest user {self.hottest_user_per_minute} "
                f"calls/min, staleness bound {self.published_bound(queue_wait):.0f} s, max "
                f"staleness at 20% drop {worst:.0f} s, hottest doc "
                f"{self.hottest_doc_writes_per_second:.2f} writes/s")


def figures(world: World, days: float, drop: float, size: int,
            prices: dict[str, Any], calendar_price: float | None = None) -> Figures:
    """Everything measured in [0, days) of `world`, scaled to `size` calendars."""
    share = world.population.share
    scale = 1.0 / share
    seconds = days * DAY
    calls = world.calendar.calls
    io = world.db.io
    queue = world.queue
    calendars = world.population.calendars
    quiet = [c.calendar_id for c in calendars if c.rate == 0]
    quiet_calls = sum(calls.by_calendar.get(c, 0) for c in quiet)
    hottest_user, hottest_user_rate = calls.hottest_user()
    owners = world.population.owners()
    path, per_minute, per_second = io.hottest()
    samples = world.probe.samples
    # A change still not in the feed when the run ends is at least this stale: it
    # counts in the maximum (a maximum of the resolved ones alone would flatter).
    oldest = world.probe.oldest_unresolved()
    open_age = world.clock.t - oldest if oldest is not None else 0.0
    sync_runs = float(sum(world.worker_status.values()))
    webhook_requests = float(sum(world.webhook_results.values()))
    jobs = world.renewer_jobs
    entries = float(io.writes_by_collection().get("changes", 0))
    usage = DailyUsage(
        calendars=size,
        worker_runs=sync_runs * scale / days,
        webhook_requests=webhook_requests * scale / days,
        # Continuations scale with the population; the scheduler's ticks and the
        # shard tasks they fan out to do not.
        renewer_runs=(jobs["continuation"] * scale + jobs["tick"] + jobs["shard"]) / days,
        firestore_reads=io.reads.total * scale / days,
        firestore_writes=io.writes.total * scale / days,
        feed_entries=entries * scale / days,
        # The renewer's queue serves ticks and shards, not calendars: not scaled.
        task_operations=(queue.created.total + queue.dispatches.total) * scale / days
        + (world.renewer_queue.created.total + world.renewer_queue.dispatches.total) / days,
        pubsub_billed_bytes=world.publisher.billed_bytes * scale / days,
        calendar_requests=calls.requests.total * scale / days)

    minutes = calls.requests.per_minute(0, seconds)
    peak_at = 60 * minutes.index(max(minutes)) if minutes else 0

    def daily(counter: dict[str, Any]) -> dict[str, float]:
        return {k: round(v * scale / days, 1) for k, v in sorted(counter.items())}

    return Figures(
        size=size, simulated=len(calendars), share=share, days=days, drop=drop,
        staleness_bound=world.config.staleness_bound,
        project_quota=world.config.project_quota,
        calls_per_day=calls.requests.total * scale / days,
        calls_by_method=daily(calls.by_method),
        peak_calls_per_minute=calls.requests.peak_minute(0, seconds) * scale,
        peak_minute_at=peak_at,
        peak_minute_by_method={m: line.between(peak_at, peak_at + 60) * scale
                               for m, line in sorted(calls.method_timelines.items())},
        hottest_user_per_minute=hottest_user_rate,
        hottest_user_calendars=owners.get(hottest_user, 0),
        quota_errors_per_day=calls.refused.total * scale / days,
        quota_errors_by_reason=daily(calls.refusals_by_reason),
        dispatches_per_second=queue.dispatches.total * scale / seconds,
        peak_dispatches_per_second=queue.dispatches.peak_second(0, seconds) * scale,
        reads_per_second=io.reads.total * scale / seconds,
        peak_reads_per_second=io.reads.peak_minute(0, seconds) * scale / 60.0,
        writes_per_second=io.writes.total * scale / seconds,
        peak_writes_per_second=io.writes.peak_minute(0, seconds) * scale / 60.0,
        hottest_doc=path, hottest_doc_writes_per_second=per_minute / 60.0,
        hottest_doc_peak_second=per_second,
        staleness_samples=len(samples),
        staleness_p50=percentile(samples, 0.50), staleness_p99=percentile(samples, 0.99),
        staleness_max=max(max(samples, default=0.0), open_age),
        unresolved=world.probe.unresolved(),
        quiet_calendars=len(quiet),
        quiet_calls_per_calendar_day=quiet_calls / len(quiet) / days if quiet else 0.0,
        calls_per_calendar_day=calls.requests.total / len(calendars) / days,
        changes_per_calendar_day=world.probe.made / len(calendars) / days,
        pushes=daily(world.calendar.pushes), webhook_results=daily(world.webhook_results),
        sync_outcomes=daily(world.sync_outcomes), renewer=daily(world.renewer_totals),
        queue={"created_per_day": queue.created.total * scale / days,
               "deduplicated_per_day": queue.deduplicated * scale / days,
               "retried": queue.retried * scale, "abandoned": queue.abandoned * scale,
               "max_depth": queue.max_depth * scale,
               "max_wait_s": round(queue.max_wait, 1)},
        usage=usage, cost=monthly_cost(usage, prices, calendar_price),
        log_lines=dict(world.log_lines.most_common(12)), net_lead=world.config.net_lead)
