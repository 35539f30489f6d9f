"""Renewer cost over 10,000 and 100,000 subscriptions with 1% of channels expiring.

    .venv/bin/python bench/renewal.py [--small 10000] [--large 100000] [--seed-budget 120]

Starts only the Firestore emulator. For each size it seeds, with batched writes
from a few threads, subscription documents and their active channel documents in
the shapes `SubscriptionStore.create` + `activate_channel` and
`FirestoreChannelStore.save_channel` + `activate_channel` produce (recently
synced, no request pending); every 100th channel expires inside the renewal
window, the rest days after it. Then it runs the real `Renewer` (default batch
200, as `app.renewer()` builds it) over the real stores, with a fake ChannelPort
(the Calendar side is not what is measured) and a recording TaskQueue. When a
run reports `continued` (its batch filled), the continuation is run in-process
the way the fan-out task would, until nothing is due (bounded).

Prints seeding time, then per size: runs, wall time, the renewer's own
`channel_reads` / `subscription_reads`, and document reads counted precisely at
the stores (every document a query or get returns, an empty query billed as 1
read, transactional reads included), writes, and reads per expiring channel.
Reads must follow the number of expiring channels, not the number of subscriptions.

If seeding the large size would take longer than --seed-budget seconds (judged
from the rate measured while seeding, checked at the halfway mark), it stops at
50,000 and says so.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from functions.channel_store import FirestoreChannelStore  # noqa: E402
from functions.channels import ChannelPort, OpenedChannel  # noqa: E402
from functions.config import Settings  # noqa: E402
from functions.model import Subscription  # noqa: E402
from functions.ports import TaskQueue  # noqa: E402
from functions.renewer import Renewer  # noqa: E402
from functions.store import FirestoreStore  # noqa: E402
from functions.subscription_store import SubscriptionStore  # noqa: E402
from functions.subscriptions import SubscriptionService  # noqa: E402
from infra.local import components  # noqa: E402
from infra.local.processes import free_port  # noqa: E402

PROJECT = "calsync-bench"
WINDOW = 86_400  # CALSYNC_RENEWAL_WINDOW_SECONDS (the default)
EXPIRING_EVERY = 100  # 1%
SUBS_PER_BATCH = 250  # + its channel = 500 writes, Firestore's batch limit
SEED_THREADS = 8
MAX_RUNS = 200  # bound on continuations per size


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


class RecordingQueue(TaskQueue):
    def __init__(self) -> None:
        self.tasks: list[tuple[str, int, str]] = []

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        self.tasks.append((sub_id, generation, origin))


class Tally:
    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0
        self.calls: dict[str, int] = {}

    def note(self, name: str, reads: int = 0, writes: int = 0) -> None:
        self.reads += reads
        self.writes += writes
        self.calls[name] = self.calls.get(name, 0) + 1


class CountingSubscriptionStore(SubscriptionStore):
    """The real store; counts documents read and written as Firestore bills them."""

    def __init__(self, client: Any, tally: Tally) -> None:
        super().__init__(client)
        self.tally = tally

    def get(self, sub_id: str) -> Any:
        self.tally.note("get", reads=1)
        return super().get(sub_id)

    def writer_state(self, sub_id: str) -> Any:
        self.tally.note("writer_state", reads=1)
        return super().writer_state(sub_id)

    def channels_of(self, sub_id: str) -> Any:
        found = super().channels_of(sub_id)
        self.tally.note("channels_of", reads=max(1, len(found)))
        return found

    def channel_doc(self, channel_id: str) -> Any:
        self.tally.note("channel_doc", reads=1)
        return super().channel_doc(channel_id)

    def list_all(self, limit: int = 1000) -> Any:
        found = super().list_all(limit)
        self.tally.note("list_all", reads=max(1, len(found)))
        return found

    def due_channels(self, state: str, before: datetime, limit: int) -> Any:
        found = super().due_channels(state, before, limit)
        self.tally.note("due_channels", reads=max(1, len(found)))
        return found

    def subscriptions_where(self, field: str, before: datetime, limit: int) -> Any:
        found = super().subscriptions_where(field, before, limit)
        self.tally.note(f"subscriptions_where({field})", reads=max(1, len(found)))
        return found

    def activate_channel(self, *args: Any, **kwargs: Any) -> None:
        self.tally.note("activate_channel", reads=1, writes=2)
        super().activate_channel(*args, **kwargs)

    def clear_request_marker(self, sub_id: str, requested_gen: int) -> bool:
        self.tally.note("clear_request_marker", reads=1, writes=1)
        return super().clear_request_marker(sub_id, requested_gen)

    def set_channel(self, channel_id: str, fields: dict[str, Any]) -> None:
        self.tally.note("set_channel", writes=1)
        super().set_channel(channel_id, fields)

    def update(self, sub_id: str, fields: dict[str, Any]) -> None:
        self.tally.note("update", writes=1)
        super().update(sub_id, fields)


class CountingChannelStore(FirestoreChannelStore):
    def __init__(self, client: Any, tally: Tally) -> None:
        super().__init__(client)
        self.tally = tally

    def save_channel(self, *args: Any, **kwargs: Any) -> None:
        self.tally.note("save_channel", writes=1)
        super().save_channel(*args, **kwargs)


class CountingRequestStore(FirestoreStore):
    def __init__(self, client: Any, tally: Tally) -> None:
        super().__init__(client)
        self.tally = tally

    def record_sync_request(self, sub_id: str, now: datetime) -> Any:
        self.tally.note("record_sync_request", reads=2, writes=1)
        return super().record_sync_request(sub_id, now)

    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        self.tally.note("mark_queued", reads=1, writes=1)
        super().mark_queued(sub_id, generation, now)


def settings() -> Settings:
    key = base64.b64encode(os.urandom(32)).decode()
    return Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": PROJECT, "CALSYNC_REGION": "local",
        "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/", "CALSYNC_CHANNEL_TOKEN_KEYS": f"k:{key}",
        "CALSYNC_RENEWAL_WINDOW_SECONDS": str(WINDOW),
    })


def seed(db: Any, count: int, now: datetime, budget: float) -> tuple[int, int, float, bool]:
    """Seed `count` subscriptions + channels; returns (seeded, expiring, seconds, cut)."""
    from functions.channel_store import CHANNELS
    from functions.store import SUBSCRIPTIONS

    def chunk(start: int) -> int:
        batch = db.batch()
        expiring = 0
        for i in range(start, min(start + SUBS_PER_BATCH, count)):
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
                "channel_expiration": expiration,
            })
            batch.set(db.collection(CHANNELS).document(channel_id), {
                "sub_id": sub_id, "state": "active", "resource_id": f"res-{i:06d}",
                "expiration": expiration, "created_at": created,
                "last_notification_at": None, "last_message_number": 0,
                "renewal_attempts": 0, "next_attempt_at": None, "last_error": None,
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
            expiring += sum(pool.map(chunk, starts))
            seeded = part_end
            elapsed = time.perf_counter() - started
            if part_start == 0 and count >= 100_000 and elapsed * 2 > budget:
                cut = True  # the second half would blow the budget: stop at half
                break
    return seeded, expiring, time.perf_counter() - started, cut


def measure(db: Any, size_label: str, subs: int, expiring: int) -> dict[str, Any]:
    tally = Tally()
    config = settings()
    channels, queue = FakeChannels(), RecordingQueue()
    sub_store = CountingSubscriptionStore(db, tally)
    service = SubscriptionService(config, sub_store, CountingChannelStore(db, tally), channels,
                                  CountingRequestStore(db, tally), queue)
    continuations: list[int] = []
    renewer = Renewer(config, sub_store, service, continue_later=lambda: continuations.append(1))
    totals = {"renewed": 0, "failed": 0, "channel_reads": 0, "subscription_reads": 0,
              "swept": 0, "safety_net": 0, "orphans_stopped": 0, "abandoned": 0}
    runs = 0
    run_times = []
    started = time.perf_counter()
    for _ in range(MAX_RUNS):
        t = time.perf_counter()
        report = renewer.run()
        run_times.append(time.perf_counter() - t)
        runs += 1
        for key in totals:
            totals[key] += getattr(report, key)
        if not report.continued:
            break
    elapsed = time.perf_counter() - started
    return {"label": size_label, "subs": subs, "expiring": expiring, "runs": runs,
            "first_run": run_times[0], "elapsed": elapsed, "tally": tally,
            "watches": channels.watches, "stops": channels.stops, "tasks": len(queue.tasks),
            **totals}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--seed-budget", type=float, default=120.0)
    args = parser.parse_args()
    sizes = [max(100, min(args.small, 200_000)), max(100, min(args.large, 200_000))]

    from google.cloud import firestore

    port = free_port()
    host = f"{components.HOST}:{port}"
    with tempfile.TemporaryDirectory(prefix="calsync-bench-renewal-") as run_dir:
        t = time.perf_counter()
        process = components.start_firestore(port, Path(run_dir), timeout=90)
        saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        db = None
        try:
            print(f"firestore emulator up in {time.perf_counter() - t:.1f}s; renewal window "
                  f"{WINDOW}s, 1 channel in {EXPIRING_EVERY} expiring inside it, "
                  f"renewer batch 200", flush=True)
            db = firestore.Client(project=PROJECT)
            results = []
            for n, count in enumerate(sizes):
                if n:
                    components.reset_firestore(host, PROJECT)
                now = datetime.now(UTC)
                seeded, expiring, seconds, cut = seed(db, count, now, args.seed_budget)
                docs = seeded * 2
                print(f"seeded {seeded:,} subscriptions + {seeded:,} channels "
                      f"({expiring:,} expiring) in {seconds:.1f}s "
                      f"({docs / seconds:,.0f} docs/s, {SEED_THREADS} threads x "
                      f"{SUBS_PER_BATCH * 2}-write batches)", flush=True)
                if cut:
                    print(f"NOTE: seeding {count:,} would take ~{seconds * 2:.0f}s, over the "
                          f"{args.seed_budget:.0f}s budget: measuring {seeded:,} instead of "
                          f"{count:,}", flush=True)
                results.append(measure(db, f"{seeded:,}", seeded, expiring))

            print()
            print(f"{'subscriptions':>13} {'expiring':>8} {'runs':>4} {'1st run s':>9} "
                  f"{'total s':>8} {'renewed':>7} {'chan_reads':>10} {'sub_reads':>9} "
                  f"{'reads':>6} {'writes':>6} {'reads/expiring':>14} {'ms/renewal':>10}")
            for r in results:
                tally = r["tally"]
                print(f"{r['label']:>13} {r['expiring']:>8,} {r['runs']:>4} "
                      f"{r['first_run']:>9.2f} {r['elapsed']:>8.2f} {r['renewed']:>7,} "
                      f"{r['channel_reads']:>10,} {r['subscription_reads']:>9,} "
                      f"{tally.reads:>6,} {tally.writes:>6,} "
                      f"{tally.reads / max(r['expiring'], 1):>14.2f} "
                      f"{r['elapsed'] * 1000 / max(r['renewed'], 1):>10.1f}")
            small, large = results[0], results[-1]
            print(f"\nsubscriptions x{large['subs'] / small['subs']:.0f}, expiring channels "
                  f"x{large['expiring'] / max(small['expiring'], 1):.0f}: counted reads "
                  f"x{large['tally'].reads / max(small['tally'].reads, 1):.1f}, time "
                  f"x{large['elapsed'] / max(small['elapsed'], 1e-9):.1f}")
            for r in results:
                calls = ", ".join(f"{k}={v}" for k, v in sorted(r["tally"].calls.items()))
                print(f"{r['label']:>13}: watches={r['watches']} stops={r['stops']} "
                      f"sync tasks={r['tasks']} swept={r['swept']} "
                      f"safety_net={r['safety_net']} failed={r['failed']} | store calls: {calls}")
                if r["renewed"] != r["expiring"]:
                    print(f"WARNING: renewed {r['renewed']} of {r['expiring']} expiring channels")
        finally:
            if db is not None:
                db.close()
            if saved is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = saved
            process.stop()


if __name__ == "__main__":
    main()
