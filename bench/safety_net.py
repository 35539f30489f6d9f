"""How long one renewer run takes with the safety net's full batch of due probes.

    .venv/bin/python bench/safety_net.py [--probes N] [--small 200] [--smoke]
                                         [--stack-env PATH]

The safety net's batch per run is sized to what the sync queue dispatches before the
run's continuation (`renewer.safety_net_batch`: 116 dispatches/s x CONTINUE_AFTER 10 s =
1,160 at the default settings). That reach holds only if the run itself takes about
CONTINUE_AFTER or less: the continuation is queued when the run ends, so a run that
takes longer sets the net's real pace (probes / run time), whatever its batch.

For each batch (the default settings' batch, then --small, 200), once with the probes
one after another and once with --in-flight at once (as deployed: NET_PROBES_IN_FLIGHT,
32), it seeds that many
subscriptions due for a probe in the real Firestore emulator (quiet, synced two days
ago, no request pending, a healthy channel, their writer state), then runs ONE real
renewer run: `Renewer` over `app.subscription_store` / `app.subscription_service`
/ `app.account_renewal` / `app.call_budget` as `app.renewer()` wires them, with the
settings terraform deploys for the net (adaptive, longest interval 86,400 s) and its
queue the real `CloudTasksQueue` against the Cloud Tasks emulator (a queue of its
own, paused, so the created tasks are counted, not dispatched).

Prints per batch: probes made, the run's wall time, probes per second, Firestore
round trips (RPCs, counted at the client) per probe and Cloud Tasks creates, the
per-step latency (mean and total per op: the writer-state read, the conditioned update,
the request record, the task create, the queued mark; with probes in flight at once
the totals add up to more than the wall time), the calsync process's CPU time per probe
(what bounds a 1-vCPU renewer whatever the latencies), the probes in flight at once,
and the load average before and after. Exits non-zero unless the run probed exactly
the seeded subscriptions and the queue holds exactly one task per probe.

Ends with the wall time per probe of each and the ratio of the two at each batch, measured
side by side in one run.

`--smoke`: batches of 20 and 5.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _stack import add_bench_args, parse, read_stack_env  # noqa: E402
from _world import count_io, fail, firestore_emulator  # noqa: E402

from functions import app  # noqa: E402
from functions.config import RENEWER, Settings  # noqa: E402
from functions.lifecycle.renewer import CONTINUE_AFTER, Renewer, safety_net_batch  # noqa: E402
from functions.lifecycle.request_sweeps import NET_PROBES_IN_FLIGHT  # noqa: E402
from infra.local import components  # noqa: E402

SUBS_PER_BATCH = 250  # + its writer state = 500 writes, Firestore's batch limit
REGION = "local"
LONGEST = 86_400  # CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS as terraform deploys it
RPCS = ("begin_transaction", "commit", "rollback", "batch_get_documents", "run_query",
        "run_aggregation_query", "batch_write", "get_document", "update_document")
STEPS = (("writer-state read", "subs", "writer_state"),
         ("conditioned update", "subs", "update_if"),
         ("request record", "requests", "record_sync_request"),
         ("task create", "queue", "enqueue_sync"),
         ("queued mark", "requests", "mark_queued"))


@dataclass
class Meter:
    """Round trips by RPC name, and per step its calls, seconds and peak in flight;
    locked, as probes may run on several threads."""

    rpcs: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.rpcs.clear()
            self.calls.clear()
            self.seconds.clear()
            self.in_flight = self.peak = 0

    def rpc(self, name: str) -> None:
        with self.lock:
            self.rpcs[name] = self.rpcs.get(name, 0) + 1

    @contextmanager
    def step(self, name: str, probe: bool) -> Iterator[None]:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            if probe:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self.lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
                if probe:
                    self.in_flight -= 1


class _RoundTrips:
    """Counts every RPC the Firestore client makes (begin and rollback included, which
    `count_io` passes through uncounted), then delegates."""

    def __init__(self, api: Any, meter: Meter) -> None:
        self._api = api
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._api, name)
        if name not in RPCS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._meter.rpc(name)
            return attr(*args, **kwargs)

        return call


def timed(meter: Meter, target: Any, method: str, name: str, probe: bool = False) -> None:
    """Wrap `target.method` (this instance only) to time it under `name`."""
    inner = getattr(target, method)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with meter.step(name, probe):
            return inner(*args, **kwargs)

    setattr(target, method, wrapper)


def env_for(project: str, tasks_host: str, queue_id: str) -> dict[str, str]:
    key = "k:" + base64.b64encode(os.urandom(32)).decode()
    return {
        "GOOGLE_CLOUD_PROJECT": project, "CALSYNC_REGION": REGION,
        "CALSYNC_TASKS_QUEUE": queue_id, "CLOUD_TASKS_EMULATOR_HOST": tasks_host,
        "CALSYNC_WORKER_URL": "http://127.0.0.1:1/", "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
        "CALSYNC_RENEWER_URL": "http://127.0.0.1:3/", "CALSYNC_CHANNEL_TOKEN_KEYS": key,
        "CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS": str(LONGEST),
    }


def seed(db: Any, count: int, now: datetime) -> float:
    """`count` quiet subscriptions due for a probe, in the shapes the stores write."""
    from functions.adapters.firestore.store import SUBSCRIPTIONS

    started = time.perf_counter()
    for start in range(0, count, SUBS_PER_BATCH):
        batch = db.batch()
        for i in range(start, min(start + SUBS_PER_BATCH, count)):
            sub_id = f"net-{uuid.uuid4().hex[:16]}"  # spread, as real ids are
            synced = now - timedelta(days=2, seconds=i)
            ref = db.collection(SUBSCRIPTIONS).document(sub_id)
            batch.set(ref, {
                "calendar_id": f"cal-{i:06d}@group.calendar.google.com",
                "owner": f"user{i % 5000}@example.com", "credentials_ref": "bearer",
                "status": "active", "last_error": None, "requested_gen": 3, "queued_gen": 3,
                "requested_at": None, "retry_at": None, "last_synced_at": synced,
                "created_at": now - timedelta(days=30), "channel_id": f"chan-{sub_id}",
                "channel_expiration": now + timedelta(days=5), "labels": {},
                "safety_net_at": synced, "net_interval": LONGEST,
                "last_notification_at": None,
            })
            batch.set(ref.collection("state").document("writer"), {
                "synced_gen": 3, "claimed_gen": 3, "change_seq": 10, "sync_token": "t"})
        batch.commit()
    return time.perf_counter() - started


def queued_tasks(tasks_host: str, queue_path: str) -> list[str]:
    client = components.tasks_client(tasks_host)
    return [t.name for t in client.list_tasks(parent=queue_path, timeout=30)]


def measure(firestore_host: str, project: str, tasks_host: str, probes: int,
            in_flight: int, meter: Meter) -> dict[str, Any]:
    from google.cloud import firestore, tasks_v2

    components.reset_firestore(firestore_host, project)
    queue_id = f"net-{uuid.uuid4().hex[:10]}"
    queue_path = f"projects/{project}/locations/{REGION}/queues/{queue_id}"
    components.create_queue(tasks_host, queue_path)
    # Paused: the tasks are created and counted, never dispatched.
    components.tasks_client(tasks_host).pause_queue(
        request=tasks_v2.PauseQueueRequest(name=queue_path), timeout=10)
    config = Settings.from_env(env_for(project, tasks_host, queue_id), function=RENEWER)
    seeder = firestore.Client(project=project)
    try:
        seconds = seed(seeder, probes, datetime.now(UTC))
    finally:
        seeder.close()

    # One process, one set of clients: what `app.renewer()` builds (memoized per key).
    app._cache.clear()  # noqa: SLF001 - each batch gets the settings of its own queue
    client = app.firestore_client(config)
    io = count_io(client)
    client._firestore_api_internal = _RoundTrips(client._firestore_api_internal, meter)
    subs = app.subscription_store(config)
    service = app.subscription_service(config)
    requests, queue = app.store(config), app.task_queue(config)
    parts = {"subs": subs, "requests": requests, "queue": queue}
    for name, part, method in STEPS:
        timed(meter, parts[part], method, name)
    timed(meter, service, "request_sync", "request_sync", probe=True)
    continued: list[datetime] = []
    renewer = Renewer(config, subs, service,
                      continue_later=lambda at, _name: continued.append(at),
                      accounts=app.account_renewal(config), budget=app.call_budget(config),
                      net_batch=probes, net_in_flight=in_flight)

    meter.reset()
    io.reset()
    load_before = os.getloadavg()[0]
    cpu = time.process_time()
    started = time.perf_counter()
    report = renewer.run()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    load_after = os.getloadavg()[0]
    tasks = queued_tasks(tasks_host, queue_path)
    app._cache.clear()  # noqa: SLF001
    client.close()
    return {"batch": probes, "seeded_s": seconds, "probes": report.safety_net,
            "errors": report.errors, "wall": wall, "cpu": cpu, "tasks": len(tasks),
            "distinct_tasks": len(set(tasks)), "rpcs": dict(meter.rpcs),
            "calls": dict(meter.calls), "seconds": dict(meter.seconds), "peak": meter.peak,
            "reads": io.reads, "writes": io.writes, "load": (load_before, load_after),
            "continued": bool(continued), "in_flight": in_flight}


def print_result(r: dict[str, Any]) -> None:
    probes = max(r["probes"], 1)
    rpcs = sum(r["rpcs"].values())
    print(f"\nbatch {r['batch']:,}, {r['in_flight']} in flight: {r['probes']:,} probes in "
          f"one run: "
          f"{r['wall']:.2f} s wall, {r['probes'] / r['wall']:.1f} probes/s "
          f"(the queue dispatches {QUEUE_RATE} a second), {r['peak']} probe(s) in flight "
          f"at most; load average {r['load'][0]:.2f} before, {r['load'][1]:.2f} after")
    print(f"  Firestore round trips: {rpcs:,} = {rpcs / probes:.2f} per probe ("
          + ", ".join(f"{k} {v / probes:.2f}" for k, v in sorted(r["rpcs"].items()))
          + f"); documents read {r['reads']:,}, written {r['writes']:,}; "
            f"Cloud Tasks creates {r['calls'].get('task create', 0):,}")
    print(f"  calsync CPU {r['cpu']:.2f} s = {r['cpu'] * 1000 / probes:.1f} ms per probe "
          f"(a 1-vCPU renewer cannot probe faster than {probes / max(r['cpu'], 1e-9):.0f}/s)")
    for name, _, _ in STEPS:
        calls, seconds = r["calls"].get(name, 0), r["seconds"].get(name, 0.0)
        print(f"  {name:>18}: {calls:>5,} calls, mean {seconds * 1000 / max(calls, 1):6.2f} ms, "
              f"total {seconds:6.2f} s")
    print(f"  queue holds {r['tasks']:,} tasks ({r['distinct_tasks']:,} distinct names); "
          f"continuation asked: {r['continued']}; errors: {len(r['errors'])}")


QUEUE_RATE = 0  # set in main from the settings


@contextmanager
def tasks_emulator(stack_env: Path | None) -> Iterator[str]:
    if stack_env is not None:
        host = read_stack_env(stack_env).get("CLOUD_TASKS_EMULATOR_HOST")
        if host:
            yield host
            return
    import tempfile

    from infra.local.processes import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="calsync-bench-tasks-") as run_dir:
        process = components.start_tasks_emulator(port, Path(run_dir), 1, timeout=60)
        try:
            yield f"{components.HOST}:{port}"
        finally:
            process.stop()


def main(argv: list[str] | None = None) -> None:
    global QUEUE_RATE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=None,
                        help="the full batch (default: the default settings' "
                             "safety_net_batch, 1,160; smoke: 20)")
    parser.add_argument("--small", type=int, default=None,
                        help="a small batch for the per-probe cost (default 200; smoke: 5)")
    parser.add_argument("--in-flight", type=int, default=NET_PROBES_IN_FLIGHT,
                        help="probes at once, as deployed (default "
                             f"{NET_PROBES_IN_FLIGHT}); each batch also runs with 1")
    add_bench_args(parser)
    args = parse(parser, argv)
    defaults = Settings.from_env(env_for("p", "127.0.0.1:1", "q"), function=RENEWER)
    QUEUE_RATE = defaults.sync_dispatches_per_second
    full = safety_net_batch(200, QUEUE_RATE)
    sizes = [args.probes or (20 if args.smoke else full), args.small or (5 if args.smoke else 200)]
    print(f"safety net batch at the default settings: {full:,} ({QUEUE_RATE} sync dispatches/s "
          f"x CONTINUE_AFTER {CONTINUE_AFTER.total_seconds():.0f} s); "
          f"{os.cpu_count()} cores", flush=True)
    results = []
    with firestore_emulator(args.stack_env) as target, tasks_emulator(args.stack_env) as tasks:
        for probes in sizes:
            for in_flight in (1, max(1, args.in_flight)):
                meter = Meter()
                result = measure(target.host, target.project, tasks, max(1, probes),
                                 in_flight, meter)
                print_result(result)
                results.append(result)
    print()
    print("wall ms per probe: " + " | ".join(
        f"batch {r['batch']:,} x{r['in_flight']}: {r['wall'] * 1000 / max(r['probes'], 1):.1f}"
        for r in results))
    for one, many in zip(results[::2], results[1::2], strict=True):
        print(f"batch {one['batch']:,}: {many['in_flight']} in flight took "
              f"{many['wall'] / one['wall']:.2f}x the wall time of one at a time "
              f"({one['wall']:.2f} s -> {many['wall']:.2f} s; CONTINUE_AFTER "
              f"{CONTINUE_AFTER.total_seconds():.0f} s)")
    for r in results:
        if r["probes"] != r["batch"] or r["tasks"] != r["batch"] or r["distinct_tasks"] != r[
                "batch"] or r["errors"]:
            fail(f"batch {r['batch']}: {r['probes']} probes, {r['tasks']} tasks "
                 f"({r['distinct_tasks']} distinct), errors {r['errors'][:3]}: the figures do "
                 f"not measure a full batch of probes")


if __name__ == "__main__":
    main()
