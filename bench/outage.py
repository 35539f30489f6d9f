"""Worker memory while Pub/Sub is unreachable: ten publishing runs of a large backlog.

    .venv/bin/python bench/outage.py [--entries 50000] [--runs 10] [--timeout 2] [--smoke]
                                     [--stack-env PATH]

The worker is this process: the real store over a Firestore emulator holding a
backlog of `--entries` unpublished feed entries, the real Pub/Sub client (ordering
on) pointed at a loopback port that accepts connections and never answers (a
dropped network: publishes hang, they do not fail fast), and the sync engine's
publish-only run, as the renewer's sweep would start it. After each run it prints
the process's resident memory and how many messages the Pub/Sub client still holds.
Bounded publishing keeps both flat: a run submits at most one window, the process
holds at most two, and each publish request ends at its deadline.
`--smoke`: 300 entries, short timeouts, a few seconds.
"""

from __future__ import annotations

import argparse
import gc
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from _stack import add_bench_args, environment, parse
from _world import NullQueue, fail, firestore_emulator

from functions.adapters.firestore import codec
from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.adapters.firestore.store import seq_id
from functions.adapters.google.pubsub import PubSubPublisher
from functions.delivery.outbox import Outbox, PublishLimits
from functions.model import ChangeDraft, EventPage, Subscription
from functions.ports import CalendarPort
from functions.sync.engine import SyncEngine, SyncSettings

SUB = "bench-outage"


class NoCalendar(CalendarPort):
    def list_page(self, subscription: Subscription, *, sync_token: str | None,
                  page_token: str | None, page_size: int) -> EventPage:
        raise AssertionError("a publishing run called the Calendar API")


@contextmanager
def unreachable_pubsub() -> Iterator[str]:
    """PUBSUB_EMULATOR_HOST at a loopback port that accepts and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        with environment({"PUBSUB_EMULATOR_HOST": host}):
            yield host
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def seed(db: Any, entries: int) -> None:
    """A subscription synced once whose `entries` feed entries are all unpublished."""
    now = datetime.now(UTC)
    sub = db.collection("subscriptions").document(SUB)
    sub.set({"calendar_id": "primary", "owner": "bench@example.com",
             "credentials_ref": "bearer", "status": "active", "requested_gen": 1,
             "labels": {"team": "bench"}, "last_synced_at": now})
    sub.collection("state").document("writer").set({
        "sync_token": "token", "synced_gen": 1, "claimed_gen": 1, "lease_generation": 1,
        "lease_until": None, "change_seq": entries, "published_seq": 0,
        "publish_pending_since": now})
    writer = db.bulk_writer()
    for seq in range(1, entries + 1):
        fields = {"summary": {"before": None, "after": f"event {seq}"},
                  "description": {"before": None, "after": "agenda " * 60}}
        draft = ChangeDraft("created", f"e{seq:08d}", fields, f'"{seq}"')
        writer.set(sub.collection("changes").document(seq_id(seq)),
                   codec.encode_change(draft, seq, now, now + timedelta(days=30)))
    writer.close()


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=None, help="default 50,000 (smoke: 300)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=None,
                        help="CALSYNC_PUBLISH_TIMEOUT_SECONDS (default 2; smoke 0.3)")
    add_bench_args(parser)
    args = parse(parser)
    entries = args.entries or (300 if args.smoke else 50_000)
    timeout = args.timeout or (0.3 if args.smoke else 2.0)
    limits = PublishLimits(timeout=timeout, max_messages=100 if args.smoke else 1000)
    with firestore_emulator(args.stack_env) as target, unreachable_pubsub() as host:
        from google.cloud import firestore

        db = firestore.Client(project=target.project)
        started = time.perf_counter()
        seed(db, entries)
        print(f"backlog of {entries:,} entries written in {time.perf_counter() - started:.1f}s; "
              f"Pub/Sub unreachable at {host} (accepts, never answers)", flush=True)
        store = OutboxFirestoreStore(db)
        publisher = PubSubPublisher(target.project, "bench-outage", rpc_timeout=timeout,
                                    max_messages=limits.max_messages,
                                    max_bytes=limits.max_bytes)
        engine = SyncEngine(store, NoCalendar(), NullQueue(),  # type: ignore[arg-type]
                            SyncSettings(), outbox=Outbox(store, publisher, target.project,
                                                          limits=limits))
        gc.collect()
        base = rss_mib()
        print(f"publish timeout {timeout:g}s, window {limits.max_messages} messages; "
              f"RSS before the first run: {base:.1f} MiB")
        figures = []
        try:
            for run in range(1, args.runs + 1):
                report = engine.run(SUB)
                gc.collect()
                held = publisher._flow._message_count
                figures.append((rss_mib(), held))
                print(f"  run {run:2d}: outcome {report.outcome.value}, published "
                      f"{report.published}, {report.duration:5.2f}s, RSS {figures[-1][0]:7.1f} MiB"
                      f" ({figures[-1][0] - base:+6.1f}), messages held by the client {held}",
                      flush=True)
        finally:
            publisher.close()
            db.close()
        state = store.get_writer_state(SUB)
        if int(state.get("published_seq") or 0) != 0:
            fail("something was published to a Pub/Sub that never answers")
        later = [rss for rss, _ in figures[1:]] or [figures[0][0]]
        print(f"RSS after run 1: {figures[0][0]:.1f} MiB; runs 2-{args.runs}: "
              f"{min(later):.1f}..{max(later):.1f} MiB (last {figures[-1][0]:.1f}); most "
              f"messages held at once: {max(h for _, h in figures)} (bound: two windows, "
              f"{2 * limits.max_messages})")


if __name__ == "__main__":
    main()
