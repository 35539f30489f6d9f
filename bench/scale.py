"""calsync at 10^4 - 10^6 calendars: a day on a virtual clock, the real services over
in-memory ports (infra/sim).

    .venv/bin/python bench/scale.py [--calendars N ...] [--days 1] [--drop 0,0.01,0.2]
                                    [--max-simulated 100000] [--smoke] [--json PATH] ...

For each size and each notification drop rate it seeds a steady state (every
calendar synced within the safety net's longest interval, channels spread over their
lifetime), runs the webhook, the task queue and worker, the renewer as terraform
schedules it, the outbox, against a fake Google Calendar that enforces the per-project
and per-user quotas, issues and expires sync tokens, and pushes each change to
the calendar's channels (dropped, duplicated, delayed at the given rates); then
prints, per size: Calendar calls per day and peak per minute (project and the
hottest user), quota errors, task dispatches per second, Firestore reads and
writes per second and the hottest document's writes per second, staleness (a
change on Google's side to its feed entry) p50/p99/max per drop rate, calls per
quiet calendar per day (renewals included), how many calendars fit under the
Calendar API's daily billing threshold, and the cost per 1,000 calendars per
month from bench/prices.json. Then the one line other tools read:

    scale N calendars: quiet X.XX calls/calendar/day, peak P calls/min (quota Q), hottest
    user U calls/min, staleness bound B s, max staleness at 20% drop M s, hottest doc W writes/s

B is the safety net's longest interval plus one renewer period, from the settings
(as terraform deploys them: `infra.sim.world.sim_settings`), plus the sync queue's
longest wait in any of the size's runs beyond the safety net's lead (a probe is
queued a lead before its row falls due; `Figures.published_bound`). The
load figures of the line (and the cost) are those of the first drop rate given;
M is from the 20 % run (added if --drop lacks it).

Sampling: a size above --max-simulated calendars is simulated as a uniform sample
of owners (whole owners) holding that many calendars, with the project's Calendar
quota and the queue's dispatch rate scaled by the sample's share; project-level
figures are scaled back up by 1/share (per-calendar, per-user and per-document
figures are not scaled). infra/sim/report.py says why that is faithful and where
it overstates (peaks).

The workload model (infra/sim/workload.py) is an assumption throughout; every
parameter is an option here. `--set CALSYNC_X=value` changes a calsync setting
(as terraform would), e.g. `--set CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS=43200`.

`--smoke`: 10,000 and 1,000,000 calendars sampled down to 150, a quarter day, drops 0
and 20 %: the same code path in seconds (`make test`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _stack import add_bench_args, parse  # noqa: E402

from infra.sim.calendar import PushFaults  # noqa: E402
from infra.sim.cost import load_prices  # noqa: E402
from infra.sim.report import Figures, figures  # noqa: E402
from infra.sim.tasks import QueueConfig, terraform_defaults  # noqa: E402
from infra.sim.workload import WorkloadModel, sample  # noqa: E402
from infra.sim.world import (  # noqa: E402
    World,
    WorldConfig,
    renewer_period_from_terraform,
    sim_settings,
)

SIZES = (10_000, 100_000, 1_000_000)
DROPS = (0.0, 0.01, 0.2)
LINE_DROP = 0.2


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"want numbers separated by commas: {err}") from err


def _sizes(text: str) -> list[int]:
    try:
        return [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"want calendar counts: {err}") from err


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("CALSYNC_"):
        raise argparse.ArgumentTypeError("want CALSYNC_NAME=value")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_args(parser, stack=False)
    parser.add_argument("--calendars", type=_sizes, action="append", metavar="N[,N...]",
                        help="sizes to simulate (repeatable; default 10000,100000,1000000)")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    parser.add_argument("--drop", type=_floats, default=list(DROPS), metavar="R[,R...]",
                        help="fractions of notifications dropped, one run each "
                             "(default 0,0.01,0.2)")
    parser.add_argument("--max-simulated", type=int, default=100_000, metavar="N",
                        help="simulate at most this many calendars, sampling above it "
                             "(default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write every figure as JSON here")
    parser.add_argument("--calendar-price", type=float, default=None, metavar="USD",
                        help="price of one Calendar request above the daily billing threshold "
                             "(not public; without it the cost leaves Calendar out)")
    group = parser.add_argument_group("workload (infra/sim/workload.py; assumptions)")
    defaults = WorkloadModel()
    for name, help_text in (
            ("quiet_share", "share of calendars with no change in a day"),
            ("min_rate", "changes/day of the least active changing calendar"),
            ("zipf_exponent", "Zipf rank-frequency exponent of change rates"),
            ("max_rate", "changes/day cap"),
            ("admin_share", "share of calendars held by resource-admin owners"),
            ("diurnal_amplitude", "daily swing of the change rate (0.5: 1.5x at peak)"),
            ("extra_calendar_p", "P(a person owner has one more calendar)")):
        group.add_argument(f"--{name.replace('_', '-')}", type=float,
                           default=getattr(defaults, name),
                           help=f"{help_text} (default {getattr(defaults, name)})")
    group.add_argument("--admin-calendars", type=int, default=defaults.admin_calendars,
                       help=f"calendars per resource-admin owner "
                            f"(default {defaults.admin_calendars})")
    faults = parser.add_argument_group("Google's side")
    push = PushFaults()
    faults.add_argument("--duplicate", type=float, default=0.01,
                        help="fraction of notifications sent twice (default 0.01)")
    faults.add_argument("--delay", type=float, default=0.01,
                        help="fraction of notifications delayed 1-10 min (default 0.01)")
    faults.add_argument("--latency", type=float, default=push.latency_seconds,
                        help=f"mean push latency, s (default {push.latency_seconds})")
    faults.add_argument("--token-410-rate", type=float, default=0.001,
                        help="fraction of incremental listings answered 410 (default 0.001)")
    faults.add_argument("--no-quotas", action="store_true",
                        help="do not enforce the Calendar quotas")
    system = parser.add_argument_group("calsync")
    system.add_argument("--renewer-period", type=float, default=None,
                        help="Cloud Scheduler period of the renewer, s (default: "
                             "terraform's renewal_schedule)")
    system.add_argument("--queue-rate", type=float, default=None, metavar="PER_S",
                        help="the sync queue's max_dispatches_per_second (default: "
                             "terraform's, from the call budget settings)")
    system.add_argument("--set", type=_setting, action="append", default=[],
                        metavar="CALSYNC_X=V", help="a calsync setting, as terraform sets it")
    return parser


def _queue(args: argparse.Namespace) -> QueueConfig:
    queue = QueueConfig.from_terraform()
    if args.queue_rate is not None:
        queue = replace(queue, max_dispatches_per_second=args.queue_rate)
    return queue


def run_one(size: int, drop: float, args: argparse.Namespace, model: WorkloadModel,
            prices: dict[str, Any]) -> tuple[Figures, float]:
    fraction = min(1.0, args.max_simulated / size)
    population = sample(model, size, fraction, random.Random(args.seed))
    config = WorldConfig(
        settings=sim_settings(dict(args.set)),
        push=PushFaults(drop=drop, duplicate=args.duplicate, delay=args.delay,
                        latency_seconds=args.latency),
        sync_token_410_rate=args.token_410_rate,
        renewer_period=args.renewer_period or renewer_period_from_terraform(),
        queue=_queue(args), quotas=not args.no_quotas, seed=args.seed)
    started = time.perf_counter()
    world = World(population, model, config)
    world.seed()
    world.run(args.days)
    wall = time.perf_counter() - started
    print(f"[scale] {size:,} calendars, drop {drop:.0%}: simulated in {wall:.0f} s",
          file=sys.stderr, flush=True)
    return figures(world, args.days, drop, size, prices, args.calendar_price), wall


def _n(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def print_load(f: Figures) -> None:
    methods = ", ".join(f"{m} {_n(v)}" for m, v in f.calls_by_method.items())
    print(f"  Calendar API: {_n(f.calls_per_day)} calls/day ({methods}); peak "
          f"{f.peak_calls_per_minute:.0f}/min of the project's {f.project_quota}; hottest user "
          f"{f.hottest_user_per_minute}/min (an owner of {f.hottest_user_calendars} calendars); "
          f"quota errors {_n(f.quota_errors_per_day)}/day {f.quota_errors_by_reason or ''}")
    made_of = ", ".join(f"{m} {v:.0f}" for m, v in f.peak_minute_by_method.items() if v)
    print(f"  peak minute at {f.peak_minute_at} s: {made_of}")
    print(f"  per calendar: {f.changes_per_calendar_day:.2f} changes/day, "
          f"{f.calls_per_calendar_day:.2f} calls/day; quiet calendars "
          f"({f.quiet_calendars} simulated): {f.quiet_calls_per_calendar_day:.2f} calls/day "
          f"(renewals included); under the 1M/day billing threshold: "
          f"{f.calendars_under_billing_threshold:,} calendars "
          f"({f.quiet_calendars_under_billing_threshold:,} if all were quiet); under the "
          f"{f.project_quota:,}/min quota at this peak: {f.calendars_under_minute_quota:,}")
    print(f"  Cloud Tasks: {f.dispatches_per_second:.2f} dispatches/s, peak "
          f"{f.peak_dispatches_per_second:.0f}/s; {f.queue}")
    print(f"  Firestore: {f.reads_per_second:.1f} reads/s (peak minute "
          f"{f.peak_reads_per_second:.1f}/s), {f.writes_per_second:.1f} writes/s (peak minute "
          f"{f.peak_writes_per_second:.1f}/s); hottest document {f.hottest_doc}: "
          f"{f.hottest_doc_writes_per_second:.2f} writes/s over its busiest minute, "
          f"{f.hottest_doc_peak_second} in its busiest second")
    print(f"  pushes/day {f.pushes}; webhook {f.webhook_results}")
    print(f"  sync runs/day {f.sync_outcomes}; renewer/day {f.renewer}")
    cost = ", ".join(f"{k} {v / (f.size / 1000):.2f}" for k, v in f.cost.lines.items() if v)
    calendar_note = "" if f.cost.calendar_priced else (
        f"; Calendar API not priced (price not public): "
        f"{_n(f.cost.calendar_billable_requests)} billable requests/month")
    print(f"  cost: ${f.cost_per_1000:.2f} per 1,000 calendars per month ({cost}){calendar_note}")
    if f.log_lines:
        print(f"  warnings logged: {f.log_lines}")


def print_staleness(f: Figures, wall: float) -> None:
    print(f"  drop {f.drop:.0%}: staleness p50 {f.staleness_p50:.1f} s, p99 "
          f"{f.staleness_p99:.1f} s, max {f.staleness_max:.1f} s over "
          f"{f.staleness_samples} changes; {f.unresolved} not in the feed when the run "
          f"ended (the max counts them as old as they then were); wall {wall:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    sizes = [n for group in (args.calendars or [list(SIZES)]) for n in group]
    drops = list(args.drop)
    if args.smoke:
        sizes = [10_000, 1_000_000] if not args.calendars else sizes
        args.max_simulated = min(args.max_simulated, 150)
        args.days = min(args.days, 0.25)
        drops = [0.0, LINE_DROP]
    if LINE_DROP not in drops:
        drops.append(LINE_DROP)
        print(f"(--drop lacks {LINE_DROP:.0%}: added, the summary line needs it)")
    model = replace(WorkloadModel(), **{
        name: getattr(args, name) for name in (
            "quiet_share", "min_rate", "zipf_exponent", "max_rate", "admin_share",
            "diurnal_amplitude", "extra_calendar_p", "admin_calendars")})
    prices = load_prices()
    schedule = terraform_defaults(Path(__file__).resolve().parent.parent / "terraform"
                                  / "variables.tf").get("renewal_schedule")
    print(f"workload: {model}")
    print(f"queue (terraform defaults unless --queue-rate): {_queue(args)}; renewer every "
          f"{args.renewer_period or renewer_period_from_terraform():.0f} s (terraform's "
          f"renewal_schedule: {schedule!r})")
    lines: list[str] = []
    results: list[dict[str, Any]] = []
    for size in sizes:
        runs = [(drop, *run_one(size, drop, args, model, prices)) for drop in drops]
        first = runs[0][1]
        print(f"\n== {size:,} calendars: simulated {first.simulated:,} "
              f"({first.share:.1%}), {args.days:g} day(s), seed {args.seed}; figures at "
              f"full size (drop {first.drop:.0%})")
        print_load(first)
        for _, f, wall in runs:
            print_staleness(f, wall)
        at_line_drop = next(f for drop, f, _ in runs if drop == LINE_DROP)
        wait = max(f.queue.get("max_wait_s", 0.0) for _, f, _ in runs)
        print(f"  staleness bound {first.published_bound(wait):.0f} s: the net's longest "
              f"interval and one renewer tick ({first.staleness_bound:.0f} s), plus the sync "
              f"queue's longest wait ({wait:.1f} s) beyond the net's lead "
              f"({first.net_lead:.0f} s)")
        line = first.line(at_line_drop.staleness_max, wait)
        lines.append(line)
        results += [{**{k: v for k, v in asdict(f).items() if k != "cost"},
                     "cost_lines": f.cost.lines, "cost_per_1000": f.cost_per_1000,
                     "calendars_under_billing_threshold": f.calendars_under_billing_threshold,
                     "calendars_under_minute_quota": f.calendars_under_minute_quota,
                     "wall_seconds": wall} for _, f, wall in runs]
    print()
    for line in lines:
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"lines": lines, "runs": results}, indent=1,
                                        default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
