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
`--smoke`: 50 events, one pair, a few seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
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

DISPATCH_LIMIT = 1800.0
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=None, help="default 20,000 (smoke: 50)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="pairs of runs with and without publishing, interleaved; the "
                             "overhead is the ratio of their medians (default 3; smoke 1)")
    add_bench_args(parser)
    args = parse(parser)
    events = args.events or (50 if args.smoke else 20_000)
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
        on: list[tuple[float, float]] = []
        off: list[tuple[float, float]] = []
        try:
            for i in range(repeat):
                if i % 2:
                    on.append(publishing.run(f"bench-pub-{i}", events))
                    off.append(without(f"bench-off-{i}"))
                else:
                    off.append(without(f"bench-off-{i}"))
                    on.append(publishing.run(f"bench-pub-{i}", events))
                print(f"  pair {i + 1}/{repeat}: publishing off {off[-1][0]:6.2f} s "
                      f"(cpu {off[-1][1]:5.2f} s), on {on[-1][0]:6.2f} s (cpu {on[-1][1]:5.2f} s)"
                      f" -> {on[-1][0] / off[-1][0]:.2f} x", flush=True)
        finally:
            publishing.close()
        on_s, off_s = (statistics.median(t for t, _ in on), statistics.median(t for t, _ in off))
        on_cpu = statistics.median(c for _, c in on)
        off_cpu = statistics.median(c for _, c in off)
        bound, listed = lower_bound(db, port, subscription(store, "bench-bound"))
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
        print(f"  lower bound           : {bound:8.2f} s  (list + BulkWriter at 100k ops/s)")
        print(f"  naive get+set         : {slow:8.2f} s")
        print(f"  ratio vs lower bound  : {ours / bound:8.2f} x  (target <= 1.5)")
        print(f"  speed-up vs naive     : {slow / ours:8.2f} x  (target >= 5)")
        rate = listed / ours
        print(f"  throughput            : {rate:8.0f} events/s -> about "
              f"{int(rate * DISPATCH_LIMIT):,} events within the 30-min dispatch limit")


if __name__ == "__main__":
    main()
