"""Full sync of a large calendar: our run against a lower bound and a naive baseline.

    .venv/bin/python bench/full_sync.py [--events 20000] [--repeat 3] [--smoke]
                                        [--stack-env PATH]

Lower bound: listing the same events through the real client, plus writing the
same documents (snapshots and change entries) with a BulkWriter whose rate
limit is raised. Naive baseline: list, then get and set each event's snapshot
and entry one at a time. All three run against the same emulators in one process.
Document reads and writes are counted at the Firestore client (bench/_world.py).
Publishing on: the same full sync with the outbox publishing every entry to the
Pub/Sub emulator (the stack's, or one started here), in `--repeat` interleaved
pairs with the run without, in the same process; the overhead is the ratio of
the two medians (target: at most 10 % slower).
Memory (`--sizes 10000,50000,100000`): for each size, a calendar of that many
events (one in 50 a weekly recurring series) is fully synced by a child process of
its own (the Calendar emulator lives in this one), which reports its peak RSS
(VmHWM) after the imports and after the sync: the sizes side by side show
whether memory grows with the calendar. The largest calendar one run handles
inside the dispatch deadline follows from the slowest size's rate; beyond it the
run saves its page token and a follow-up task goes on (CALSYNC_RUN_BUDGET_SECONDS).
`--smoke`: 50 events, one pair, sizes 200 and 400, a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _stack import add_bench_args, environment, parse, read_stack_env
from _world import (
    USER,
    NullQueue,
    calendar_port,
    count_io,
    emulators,
    fail,
    seed,
    subscription,
    timed,
)

from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.google.calendar import GoogleCalendar
from functions.model import Subscription
from functions.sync.engine import SyncEngine, SyncSettings
from functions.sync.plan import plan_page

DISPATCH_LIMIT = 1800.0  # CALSYNC_DISPATCH_DEADLINE_SECONDS' default (and Cloud Tasks' cap)
RUN_BUDGET = 1500.0  # CALSYNC_RUN_BUDGET_SECONDS' default
PUBLISH_TIMEOUT = 60.0


@contextmanager
def pubsub_emulator(stack_env: Path | None) -> Iterator[str]:
    """PUBSUB_EMULATOR_HOST set for the block: the stack's emulator, or our own."""
    from infra import pubsub_emulator as emulator

    host = read_stack_env(stack_env).get("PUBSUB_EMULATOR_HOST") if stack_env else None
    if host:
        with environment({"PUBSUB_EMULATOR_HOST": host}):
            yield host
        return
    from infra.local.processes import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="calsync-bench-pubsub-") as run_dir:
        started = time.perf_counter()
        process = emulator.start_pubsub(port, Path(run_dir), timeout=90)
        print(f"pubsub emulator up in {time.perf_counter() - started:.1f}s", flush=True)
        try:
            with environment({"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"}):
                yield f"127.0.0.1:{port}"
        finally:
            process.stop()


class Publishing:
    """The same full sync with the outbox on, publishing every entry to the Pub/Sub
    emulator: one topic and one warm client for every run, as in a worker."""

    def __init__(self, db: Any, port: GoogleCalendar) -> None:
        from functions.adapters.firestore.outbox import OutboxFirestoreStore
        from functions.adapters.google.pubsub import PubSubPublisher
        from functions.delivery.outbox import Outbox, PublishLimits
        from infra import pubsub_emulator as emulator

        project = db.project
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        emulator.create_topic(project, topic)
        self.store = OutboxFirestoreStore(db)
        self.publisher = PubSubPublisher(project, topic, rpc_timeout=PUBLISH_TIMEOUT)
        self.engine = SyncEngine(
            self.store, port, NullQueue(), SyncSettings(page_size=2500),  # type: ignore[arg-type]
            outbox=Outbox(self.store, self.publisher, project,
                          limits=PublishLimits(timeout=PUBLISH_TIMEOUT)))

    def run(self, sub_id: str, events: int) -> tuple[float, float]:
        sub = subscription(self.store, sub_id)
        cpu = time.process_time()
        seconds, report = timed(lambda: self.engine.run(sub.id))
        cpu = time.process_time() - cpu
        entries = sum(report.entries.values())
        if report.outcome.value != "synced" or entries != events:
            fail(f"full sync with publishing: outcome {report.outcome.value}, {entries} entries")
        published = int(self.store.get_writer_state(sub.id).get("published_seq") or 0)
        if published != entries:
            fail(f"publishing on: {published} of {entries} entries acknowledged within "
                 f"{PUBLISH_TIMEOUT:.0f} s")
        return seconds, cpu

    def close(self) -> None:
        self.publisher.close()


def list_all(port: GoogleCalendar, sub: Subscription) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    while True:
        page = port.list_page(sub, sync_token=None, page_token=token, page_size=2500)
        items.extend(page.items)
        if not page.next_page_token:
            return items
        token = page.next_page_token


def lower_bound(db: Any, port: GoogleCalendar, sub: Subscription) -> tuple[float, int]:
    from google.cloud.firestore_v1.bulk_writer import BulkWriterOptions

    def run() -> int:
        items = list_all(port, sub)
        writer = db.bulk_writer(options=BulkWriterOptions(
            initial_ops_per_second=100_000, max_ops_per_second=100_000))
        base = db.collection("subscriptions").document(sub.id)
        now = datetime.now(UTC)
        for seq, write in enumerate(plan_page(items, {}, {}, first_sync=True), start=1):
            writer.set(base.collection("events").document(write.event_id),
                       {**write.snapshot, "_synced_at": now, "_seq": seq})
            change = write.change
            assert change is not None
            writer.set(base.collection("changes").document(f"{seq:020d}"), {
                "seq": seq, "kind": change.kind, "event_id": change.event_id,
                "recurring_event_id": None, "fields": change.fields, "etag": change.etag,
                "at": now})
        writer.close()
        return len(items)

    return timed(run)


def naive(db: Any, port: GoogleCalendar, sub: Subscription) -> tuple[float, int]:
    def run() -> int:
        items = list_all(port, sub)
        base = db.collection("subscriptions").document(sub.id)
        now = datetime.now(UTC)
        for seq, write in enumerate(plan_page(items, {}, {}, first_sync=True), start=1):
            ref = base.collection("events").document(write.event_id)
            ref.get()
            ref.set({**write.snapshot, "_synced_at": now, "_seq": seq})
            change = write.change
            assert change is not None
            base.collection("changes").document(f"{seq:020d}").set({
                "seq": seq, "kind": change.kind, "event_id": change.event_id,
                "fields": change.fields, "etag": change.etag, "at": now})
        return len(items)

    return timed(run)


def _peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM: reset by exec, unlike `ru_maxrss`, which
    a child started from this bench would inherit from the bench's own peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_sync(user: str, sub_id: str, api_endpoint: str) -> None:
    """In a process of its own: one full sync of `user`'s calendar; prints one JSON line."""
    from google.cloud import firestore

    from functions.adapters.google.calendar import OwnerTokenCredentials

    db = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    store = FirestoreStore(db)
    port = GoogleCalendar(OwnerTokenCredentials(), api_endpoint=api_endpoint)
    engine = SyncEngine(store, port, NullQueue(), SyncSettings(page_size=2500))  # type: ignore[arg-type]
    sub = subscription(store, sub_id, user)
    baseline = _peak_rss_mib()
    seconds, report = timed(lambda: engine.run(sub.id))
    print(json.dumps({"outcome": report.outcome.value, "seconds": seconds,
                      "items": report.items, "pages": report.pages,
                      "entries": sum(report.entries.values()),
                      "rss_before_mib": baseline, "rss_peak_mib": _peak_rss_mib()}))


def memory(calendar: Any, sizes: list[int]) -> None:
    """Each size synced by a child process; peak RSS side by side."""
    rows = []
    for size in sizes:
        user = f"bench-{size}@example.com"
        seed(calendar, size, user=user, series_every=50)
        out = subprocess.run(
            [sys.executable, __file__, "--child-sync", user, f"bench-mem-{size}",
             calendar.api_endpoint], check=False, capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"the child sync of {size} events failed:\n{out.stderr[-2000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        if row["outcome"] != "synced" or row["entries"] != size:
            fail(f"full sync of {size} events in a child: {row}")
        rows.append((size, row))
        print(f"  {size:>7} events: {row['seconds']:7.2f} s, {row['pages']:3d} pages, "
              f"peak RSS {row['rss_peak_mib']:6.1f} MiB (after imports "
              f"{row['rss_before_mib']:6.1f} MiB, sync adds "
              f"{row['rss_peak_mib'] - row['rss_before_mib']:5.1f} MiB)", flush=True)
    size, row = min(rows, key=lambda r: r[0] / r[1]["seconds"])
    rate = size / row["seconds"]
    print(f"  largest calendar per run: slowest rate {rate:,.0f} events/s x run budget "
          f"{RUN_BUDGET:.0f} s = about {int(rate * RUN_BUDGET):,} events (dispatch deadline "
          f"{DISPATCH_LIMIT:.0f} s: {int(rate * DISPATCH_LIMIT):,}); larger calendars "
          "continue in follow-up tasks from the saved page token", flush=True)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child-sync":
        child_sync(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=None, help="default 20,000 (smoke: 50)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="pairs of runs with and without publishing, interleaved; the "
                             "overhead is the ratio of their medians (default 3; smoke 1)")
    parser.add_argument("--sizes", default=None,
                        help="calendar sizes for the memory figures, comma-separated "
                             "(default 10000,50000,100000; smoke 200,400; 0: none)")
    add_bench_args(parser)
    args = parse(parser)
    events = args.events or (50 if args.smoke else 20_000)
    sizes = [int(n) for n in (args.sizes or ("200,400" if args.smoke
                                             else "10000,50000,100000")).split(",") if int(n)]
    repeat = args.repeat or (1 if args.smoke else 3)
    with emulators(args.stack_env) as (db, calendar), pubsub_emulator(args.stack_env):
        seed(calendar, events)
        port = calendar_port(calendar)
        store = FirestoreStore(db)
        io = count_io(db)
        engine = SyncEngine(store, port, NullQueue(), SyncSettings(page_size=2500))  # type: ignore[arg-type]
        publishing = Publishing(db, port)

        def without(sub_id: str) -> tuple[float, float]:
            sub = subscription(store, sub_id)
            cpu = time.process_time()
            seconds, report = timed(lambda: engine.run(sub.id))
            if report.outcome.value != "synced" or sum(report.entries.values()) != events:
                fail(f"full sync of {events} events: outcome {report.outcome.value}")
            return seconds, time.process_time() - cpu

        io.reset()
        ours_sub = subscription(store, "bench-ours")
        ours, report = timed(lambda: engine.run(ours_sub.id))
        reads, writes = io.reads, io.writes
        entries = sum(report.entries.values())
        if report.outcome.value != "synced" or entries != events:
            fail(f"full sync of {events} events: outcome {report.outcome.value}, "
                 f"{entries} entries")
        # Interleaved pairs, the order alternating, so neither warm-up nor a growing
        # database favours one side; the overhead is the ratio of the medians.
        # CPU seconds of this process (the worker, and the in-process Calendar
        # emulator) beside: what publishing costs, whatever else shares the machine.
        # The lower bound runs in the same rounds, its place rotating, so the
        # ratio to it is measured side by side (round by round, then the median).
        on: list[tuple[float, float]] = []
        off: list[tuple[float, float]] = []
        bounds: list[float] = []
        listed = 0
        try:
            for i in range(repeat):
                for step in ("off", "on", "bound")[i % 3:] + ("off", "on", "bound")[:i % 3]:
                    if step == "off":
                        off.append(without(f"bench-off-{i}"))
                    elif step == "on":
                        on.append(publishing.run(f"bench-pub-{i}", events))
                    else:
                        seconds, listed = lower_bound(
                            db, port, subscription(store, f"bench-bound-{i}"))
                        bounds.append(seconds)
                print(f"  round {i + 1}/{repeat}: publishing off {off[-1][0]:6.2f} s "
                      f"(cpu {off[-1][1]:5.2f} s), on {on[-1][0]:6.2f} s (cpu {on[-1][1]:5.2f} s)"
                      f" -> {on[-1][0] / off[-1][0]:.2f} x; bound {bounds[-1]:6.2f} s -> "
                      f"off {off[-1][0] / bounds[-1]:.2f} x the bound", flush=True)
        finally:
            publishing.close()
        on_s, off_s = (statistics.median(t for t, _ in on), statistics.median(t for t, _ in off))
        on_cpu = statistics.median(c for _, c in on)
        off_cpu = statistics.median(c for _, c in off)
        bound = statistics.median(bounds)
        side_by_side = statistics.median(o / b for (o, _), b in zip(off, bounds, strict=True))
        slow, _ = naive(db, port, subscription(store, "bench-naive"))
        print(f"full sync of {listed} events ({USER}), Firestore + Calendar emulators")
        print(f"  calsync full sync     : {ours:8.2f} s  ({report.pages} pages, "
              f"{entries} entries, {reads} reads, {writes} writes)")
        print(f"  with publishing on    : {on_s:8.2f} s  (median of {repeat}; every entry "
              f"published to the Pub/Sub emulator at {os.environ.get('PUBSUB_EMULATOR_HOST')})")
        print(f"  same, publishing off  : {off_s:8.2f} s  (median of {repeat}, interleaved with "
              "those)")
        print(f"  publishing overhead   : {on_s / off_s:8.2f} x  (ratio of the medians; target "
              f"<= 1.10; CPU of this process {on_cpu:.2f} s vs {off_cpu:.2f} s: "
              f"{on_cpu / off_cpu:.2f} x)")
        print(f"  lower bound           : {bound:8.2f} s  (list + BulkWriter at 100k ops/s; "
              f"median of {repeat}, in the same rounds)")
        print(f"  naive get+set         : {slow:8.2f} s")
        print(f"  ratio vs lower bound  : {side_by_side:8.2f} x  (publishing off / the bound, "
              f"round by round, the median of {repeat}; target <= 1.2)")
        print(f"  first run vs bound    : {ours / bound:8.2f} x  (the first sync against the "
              "fresh emulator, cold; the bound never runs cold)")
        print(f"  speed-up vs naive     : {slow / ours:8.2f} x  (target >= 5)")
        rate = listed / ours
        print(f"  throughput            : {rate:8.0f} events/s -> about "
              f"{int(rate * DISPATCH_LIMIT):,} events within the 30-min dispatch limit")
        if sizes:
            print("memory: one full sync per size, each in a process of its own", flush=True)
            memory(calendar, sizes)


if __name__ == "__main__":
    main()
