"""Renewer cost over 10,000 and 100,000 subscriptions with 1% of channels expiring.

    .venv/bin/python bench/renewal.py [--small 10000] [--large 100000] [--batch 200]
                                      [--shards 16] [--seed-budget 120] [--smoke]
                                      [--stack-env PATH]

Needs only a Firestore emulator: its own, or with --stack-env the local stack's under
a project of its own. For each size it seeds, with batched writes from a few threads,
subscription documents and their active channel documents in the shapes the
subscription and channel stores write (recently synced, no request pending); every
100th channel expires inside the renewal window, the rest days after it. Then it runs
the real `Renewer` (batch 200, as `app.renewer()` builds it) over the real stores, with
a fake ChannelPort (the Calendar side is not what is measured) and a recording
TaskQueue. With --shards n > 1 (the default, 16, is what README "Renewal at scale"
sets past about 10^5 calendars; CALSYNC_RENEWAL_SHARDS defaults to 1) it runs
one tick, which queues one task per shard, then every renewer task queued (shards,
their continuations at the next slot, the tick's continuation) in-process, in the
order Cloud Tasks would dispatch them, on a virtual clock moved to each task's
schedule time, refusing a task name used before as Cloud Tasks does; the channel
records carry their shard and the backfill of older ones is recorded done (the
steady state). With --shards 1 the tick renews itself, continuing while it must.

Prints seeding time, then per size: runs, wall time, the renewer's own
`channel_reads` / `subscription_reads`, and document reads and writes counted on the
wire at the Firestore client (bench/_world.py `count_io`: every document a lookup or
query returns, an empty query billed as 1 read, transactional reads included), and
reads per expiring channel, the sizes side by side on one line at the end. Reads
must follow the number of expiring channels, not the number of subscriptions (issue
19: at most 4 per expiring channel, flat). Exits non-zero if a size did not renew
exactly its expiring channels (then the figures measure something else).

`--smoke`: 100 and 1,000 subscriptions, 4 shards, a renewer batch of 3 and 8
renewals a minute (a budget of 2 per shard and slot), so continuations run.

If seeding the large size would take longer than --seed-budget seconds (judged
from the rate measured while seeding, checked at the halfway mark), it stops at
half and says so.

Coupling to the code under measurement, kept to public surfaces: the constructors
`SubscriptionService(settings, subscription_store, channel_store, channel_port,
request_store, task_queue)` and `Renewer(settings, subscription_store, service,
continue_later=..., batch=..., clock=..., renewer_tasks=...)` (see `build_renewer`),
`Renewer.run()` / `run_shard()` returning a report with the counters printed below
(missing ones print 0) and `continued`, `sharding.parse_job` for the task bodies, and
the seeded document shapes (`seed`).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _stack import add_bench_args, parse  # noqa: E402
from _world import IoCount, count_io, fail, firestore_emulator  # noqa: E402

from functions.adapters.firestore.store import FirestoreStore  # noqa: E402
from functions.adapters.firestore.subscriptions import SubscriptionStore  # noqa: E402
from functions.config import Settings  # noqa: E402
from functions.lifecycle.renewer import Renewer  # noqa: E402
from functions.lifecycle.sharding import parse_job  # noqa: E402
from functions.lifecycle.subscriptions import SubscriptionService  # noqa: E402
from functions.model import Subscription, channel_shard  # noqa: E402
from functions.ports import (
    ChannelPort,
    OpenedChannel,
    TaskQueue,  # noqa: E402
)
from infra.local import components  # noqa: E402

WINDOW = 86_400  # CALSYNC_RENEWAL_WINDOW_SECONDS (the default)
EXPIRING_EVERY = 100  # 1%
SUBS_PER_BATCH = 250  # + its channel = 500 writes, Firestore's batch limit
SEED_THREADS = 8
MAX_RUNS = 2000  # bound on renewer runs (tick, shards, continuations) per size
SCALE_SHARDS = 16  # README "Renewal at scale": renewal_shards past ~10^5 calendars
RATE = 1000  # CALSYNC_RENEWALS_PER_MINUTE, as deployed (smoke: SMOKE_RATE)
SMOKE_RATE = 8
TOKEN_KEY_ID = "k"
COUNTERS = ("renewed", "failed", "channel_reads", "subscription_reads", "swept", "safety_net",
            "orphans_stopped", "abandoned")


class FakeChannels(ChannelPort):
    """events.watch / channels.stop answered at once, as Google would on success."""

    def __init__(self) -> None:
        self.watches = 0
        self.stops = 0

    def watch(self, subscription: Subscription, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        self.watches += 1
        return OpenedChannel(channel_id, f"res-{subscription.calendar_id}",
                             datetime.now(UTC) + timedelta(seconds=ttl_seconds))

    def stop(self, subscription: Subscription, channel_id: str, resource_id: str) -> None:
        self.stops += 1


class RenewerTasks:
    """The renewer's own queue as Cloud Tasks runs it: a name used once is refused,
    tasks are dispatched in schedule order; `clock` is the renewer's virtual clock."""

    def __init__(self, clock: list[datetime]) -> None:
        self.clock = clock
        self.names: set[str] = set()
        self.queued: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self.refused = 0

    def __call__(self, not_before: datetime | None, name: str, body: dict[str, Any]) -> None:
        if name in self.names:
            self.refused += 1  # AlreadyExists: the queue adapter takes it as done
            return
        self.names.add(name)
        at = not_before or self.clock[0]
        self.queued.append((at, len(self.names), name, body))

    def next(self) -> tuple[str, dict[str, Any]] | None:
        if not self.queued:
            return None
        self.queued.sort(key=lambda task: task[:2])
        at, _, name, body = self.queued.pop(0)
        self.clock[0] = max(self.clock[0], at)
        return name, body


class RecordingQueue(TaskQueue):
    def __init__(self) -> None:
        self.tasks: list[tuple[str, int, str]] = []

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        self.tasks.append((sub_id, generation, origin))


def settings(project: str, shards: int, rate: int) -> Settings:
    key = base64.b64encode(os.urandom(32)).decode()
    return Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": project, "CALSYNC_REGION": "local",
        "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
        "CALSYNC_RENEWER_URL": "http://127.0.0.1:3/",
        "CALSYNC_CHANNEL_TOKEN_KEYS": f"{TOKEN_KEY_ID}:{key}",
        "CALSYNC_RENEWAL_WINDOW_SECONDS": str(WINDOW),
        "CALSYNC_RENEWAL_SHARDS": str(shards), "CALSYNC_RENEWALS_PER_MINUTE": str(rate),
    })


def build_renewer(client: Any, config: Settings, channels: ChannelPort, queue: TaskQueue,
                  continue_later: Callable[..., None], batch: int,
                  renewer_tasks: Callable[..., None] | None = None,
                  clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Renewer:
    """The renewer over the real stores, as `app.renewer()` wires it, with our two fakes."""
    subs = SubscriptionStore(client)
    service = SubscriptionService(config, subs, channels, FirestoreStore(client), queue,
                                  clock=clock)
    return Renewer(config, subs, service, continue_later=continue_later, batch=batch,
                   clock=clock, renewer_tasks=renewer_tasks)


def seed(db: Any, count: int, now: datetime, budget: float) -> tuple[int, int, float, bool]:
    """Seed `count` subscriptions + channels; returns (seeded, expiring, seconds, cut)."""
    from functions.adapters.firestore.channels import CHANNELS
    from functions.adapters.firestore.store import SUBSCRIPTIONS
    from functions.adapters.firestore.subscriptions import RENEWER, SHARD_BACKFILL

    # The steady state: every channel record has its shard (seeded below), and the
    # backfill of records written before sharding is done.
    db.collection(RENEWER).document(SHARD_BACKFILL).set({"done_at": now, "passes": 2})

    def chunk(start: int, stop: int) -> int:
        batch = db.batch()
        expiring = 0
        for i in range(start, stop):
            sub_id, channel_id = f"bench-sub-{i:06d}", f"bench-chan-{i:06d}"
            if i % EXPIRING_EVERY == EXPIRING_EVERY // 2:
                expiring += 1
                # Spread over the window: 1 h .. 23 h from now.
                expiration = now + timedelta(hours=1 + (i // EXPIRING_EVERY) % 23)
            else:
                expiration = now + timedelta(days=2, seconds=i % (5 * 86_400))
            synced = now - timedelta(seconds=60 + i % 3600)
            created = now - timedelta(days=3)
            batch.set(db.collection(SUBSCRIPTIONS).document(sub_id), {
                "calendar_id": f"cal-{i:06d}@group.calendar.google.com",
                "owner": f"user{i % 5000}@example.com", "credentials_ref": "bearer",
                "status": "active", "last_error": None, "requested_gen": 3, "queued_gen": 3,
                "requested_at": None, "retry_at": None, "last_synced_at": synced,
                "created_at": created, "channel_id": channel_id,
                "channel_expiration": expiration, "labels": {},
            })
            batch.set(db.collection(CHANNELS).document(channel_id), {
                "sub_id": sub_id, "state": "active", "resource_id": f"res-{i:06d}",
                "expiration": expiration, "created_at": created,
                "last_notification_at": None, "last_message_number": 0,
                "renewal_attempts": 0, "next_attempt_at": None, "last_error": None,
                "token_key_id": TOKEN_KEY_ID, "shard": channel_shard(channel_id),
            })
        batch.commit()
        return expiring

    started = time.perf_counter()
    seeded = expiring = 0
    cut = False
    half = count // 2
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        for part_start, part_end in ((0, half), (half, count)):
            starts = range(part_start, part_end, SUBS_PER_BATCH)
            stops = [min(start + SUBS_PER_BATCH, part_end) for start in starts]
            expiring += sum(pool.map(chunk, starts, stops))
            seeded = part_end
            elapsed = time.perf_counter() - started
            if part_start == 0 and count >= 100_000 and elapsed * 2 > budget:
                cut = True  # the second half would blow the budget: stop at half
                break
    return seeded, expiring, time.perf_counter() - started, cut


def measure(client: Any, io: IoCount, project: str, size_label: str, subs: int,
            expiring: int, batch: int, shards: int, rate: int) -> dict[str, Any]:
    channels, queue = FakeChannels(), RecordingQueue()
    continuations: list[int] = []
    clock = [datetime.now(UTC)]
    tasks = RenewerTasks(clock)
    renewer = build_renewer(client, settings(project, shards, rate), channels, queue,
                            lambda *_, **__: continuations.append(1), batch,
                            tasks if shards > 1 else None, lambda: clock[0])
    totals = dict.fromkeys(COUNTERS, 0)
    runs = 0
    run_times = []
    tick_reads = 0
    io.reset()
    started = time.perf_counter()
    job: Any = None
    for _ in range(MAX_RUNS):
        t = time.perf_counter()
        reads_before = io.reads
        if job is None:
            report = renewer.run()
        elif job.shard is not None:
            report = renewer.run_shard(job.shard, job.shards)
        else:
            report = renewer.run(fan_out=job.fan_out)
        run_times.append(time.perf_counter() - t)
        if job is None or job.shard is None:
            tick_reads += io.reads - reads_before
        runs += 1
        for key in totals:
            totals[key] += int(getattr(report, key, 0) or 0)
        if shards > 1:
            task = tasks.next()
            if task is None:
                break
            job = parse_job(json.dumps(task[1]).encode())
        elif not getattr(report, "continued", False):
            break
        else:
            job = parse_job(b"{}")
    elapsed = time.perf_counter() - started
    return {"label": size_label, "subs": subs, "expiring": expiring, "runs": runs,
            "first_run": run_times[0], "elapsed": elapsed, "reads": io.reads,
            "writes": io.writes, "calls": dict(io.calls), "watches": channels.watches,
            "stops": channels.stops, "tasks": len(queue.tasks), "shards": shards,
            "tick_reads": tick_reads, "refused": tasks.refused,
            "continuations": len(continuations) + len(tasks.names), **totals}


def report(results: list[dict[str, Any]]) -> None:
    print()
    print(f"{'subscriptions':>13} {'shards':>6} {'expiring':>8} {'runs':>4} {'1st run s':>9} "
          f"{'total s':>8} {'renewed':>7} {'chan_reads':>10} {'sub_reads':>9} "
          f"{'reads':>6} {'writes':>6} {'reads/expiring':>14} {'ms/renewal':>10}")
    for r in results:
        print(f"{r['label']:>13} {r['shards']:>6} {r['expiring']:>8,} {r['runs']:>4} "
              f"{r['first_run']:>9.2f} {r['elapsed']:>8.2f} {r['renewed']:>7,} "
              f"{r['channel_reads']:>10,} {r['subscription_reads']:>9,} "
              f"{r['reads']:>6,} {r['writes']:>6,} "
              f"{r['reads'] / max(r['expiring'], 1):>14.2f} "
              f"{r['elapsed'] * 1000 / max(r['renewed'], 1):>10.1f}")
    print("reads per expiring channel (tick and shards): " + " | ".join(
        f"{r['label']} subscriptions: {r['reads'] / max(r['expiring'], 1):.2f}"
        for r in results) + " (issue 19: at most 4, flat)")
    print("  of which the ticks' own (other sections, fan-out): " + " | ".join(
        f"{r['label']}: {r['tick_reads'] / max(r['expiring'], 1):.2f}" for r in results))
    small, large = results[0], results[-1]
    print(f"subscriptions x{large['subs'] / small['subs']:.0f}, expiring channels "
          f"x{large['expiring'] / max(small['expiring'], 1):.0f}: counted reads "
          f"x{large['reads'] / max(small['reads'], 1):.1f}, time "
          f"x{large['elapsed'] / max(small['elapsed'], 1e-9):.1f}")
    for r in results:
        calls = ", ".join(f"{k}={v}" for k, v in sorted(r["calls"].items()))
        print(f"{r['label']:>13}: watches={r['watches']} stops={r['stops']} "
              f"sync tasks={r['tasks']} renewer tasks={r['continuations']} "
              f"(names refused: {r['refused']}) "
              f"swept={r['swept']} safety_net={r['safety_net']} failed={r['failed']} "
              f"| Firestore RPCs: {calls}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=None, help="default 10,000 (smoke: 100)")
    parser.add_argument("--large", type=int, default=None,
                        help="default 100,000 (smoke: 1,000)")
    parser.add_argument("--batch", type=int, default=None,
                        help="renewer batch, default 200 as deployed (smoke: 3)")
    parser.add_argument("--shards", type=int, default=None,
                        help=f"CALSYNC_RENEWAL_SHARDS, default {SCALE_SHARDS} as set at scale "
                             "(smoke: 4); 1: the tick renews channels itself")
    parser.add_argument("--seed-budget", type=float, default=120.0)
    add_bench_args(parser)
    args = parse(parser)
    small = args.small or (100 if args.smoke else 10_000)
    large = args.large or (1_000 if args.smoke else 100_000)
    batch = max(1, args.batch or (3 if args.smoke else 200))
    shards = min(32, max(1, args.shards or (4 if args.smoke else SCALE_SHARDS)))
    rate = SMOKE_RATE if args.smoke else RATE
    sizes = [max(100, min(small, 200_000)), max(100, min(large, 200_000))]

    from google.cloud import firestore

    with firestore_emulator(args.stack_env) as target:
        print(f"renewal window {WINDOW}s, 1 channel in {EXPIRING_EVERY} expiring inside it, "
              f"renewer batch {batch}, {shards} shard(s), {rate} renewals a minute at most",
              flush=True)
        seeder = firestore.Client(project=target.project)
        client = firestore.Client(project=target.project)
        io = count_io(client)  # only the renewer's traffic goes through this client
        try:
            results = []
            for n, count in enumerate(sizes):
                if n:
                    components.reset_firestore(target.host, target.project)
                now = datetime.now(UTC)
                seeded, expiring, seconds, cut = seed(seeder, count, now, args.seed_budget)
                print(f"seeded {seeded:,} subscriptions + {seeded:,} channels "
                      f"({expiring:,} expiring) in {seconds:.1f}s "
                      f"({seeded * 2 / seconds:,.0f} docs/s, {SEED_THREADS} threads x "
                      f"{SUBS_PER_BATCH * 2}-write batches)", flush=True)
                if cut:
                    print(f"NOTE: seeding {count:,} would take ~{seconds * 2:.0f}s, over the "
                          f"{args.seed_budget:.0f}s budget: measuring {seeded:,} instead of "
                          f"{count:,}", flush=True)
                results.append(measure(client, io, target.project, f"{seeded:,}", seeded,
                                       expiring, batch, shards, rate))
            report(results)
        finally:
            client.close()
            seeder.close()
    for r in results:
        if r["renewed"] != r["expiring"] or r["failed"]:
            fail(f"{r['label']} subscriptions: renewed {r['renewed']} of {r['expiring']} "
                 f"expiring channels ({r['failed']} failed) in {r['runs']} runs: the figures "
                 f"do not measure renewing the expiring channels")


if __name__ == "__main__":
    main()
