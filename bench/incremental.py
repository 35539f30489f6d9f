"""Incremental sync cost on a 20,000-event calendar for 1, 100 and 5,000 changed events.

    .venv/bin/python bench/incremental.py [--events 20000] [--smoke] [--stack-env PATH]

Prints, per batch of changes: Calendar API calls (target ceil(changes/2500)),
Firestore document reads and writes per change (target 2 writes per changed
event plus O(1)), and the items a "list everything and compare `sequence`"
approach would fetch for the same change (a full listing every time). Reads and
writes are counted at the Firestore client (bench/_world.py). `--smoke`: 100 events,
1, 10 and 50 changes.
"""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime

from _stack import add_bench_args, parse
from _world import (
    USER,
    NullQueue,
    calendar_port,
    count_io,
    emulators,
    fail,
    seed,
    subscription,
)

from functions.adapters.firestore.store import FirestoreStore
from functions.sync.engine import SyncEngine, SyncSettings
from infra.calendar_emulator.testing import calendar_service


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=None, help="default 20,000 (smoke: 100)")
    add_bench_args(parser)
    args = parse(parser)
    events = args.events or (100 if args.smoke else 20_000)
    rounds = (1, 10, 50) if args.smoke else (1, 100, 5000)
    with emulators(args.stack_env) as (db, calendar):
        seed(calendar, events)
        store = FirestoreStore(db)
        io = count_io(db)
        sub = subscription(store, "bench-incremental")
        engine = SyncEngine(store, calendar_port(calendar), NullQueue(),  # type: ignore[arg-type]
                            # One run's cost is measured here, not the pacing between runs.
                            SyncSettings(page_size=2500, min_sync_interval=0.01))
        first = engine.run(sub.id)
        if first.outcome.value != "synced":
            fail(f"initial full sync: outcome {first.outcome.value}")
        api = calendar_service(calendar.base_url, USER)
        ids = [item["id"] for item in calendar.control.dump_events(USER)]
        print(f"incremental sync on a {len(ids)}-event calendar (Firestore + Calendar emulators)")
        print(f"{'changes':>8} {'cal calls':>10} {'target':>7} {'reads':>7} {'writes':>7} "
              f"{'reads/chg':>10} {'writes/chg':>11} {'entries':>8} {'full-list items':>16}")
        for round_, changes in enumerate(rounds):
            changes = min(changes, len(ids))
            for event_id in ids[:changes]:
                api.events().patch(calendarId="primary", eventId=event_id,
                                   body={"summary": f"changed {round_}"}).execute()
            # What the webhook does for the notification (not counted: the
            # webhook's cost, measured by bench/webhook.py).
            store.record_sync_request(sub.id, datetime.now(UTC))
            calendar.control.reset_counters()
            io.reset()
            report = engine.run(sub.id)
            entries = sum(report.entries.values())
            if report.outcome.value != "synced" or entries != changes:
                fail(f"{changes} changes: outcome {report.outcome.value}, {entries} entries")
            counters = calendar.control.counters()
            calls = counters.get("calls", {}).get("events.list", report.pages)
            print(f"{changes:>8} {calls:>10} {math.ceil(changes / 2500):>7} {io.reads:>7} "
                  f"{io.writes:>7} {io.reads / changes:>10.2f} "
                  f"{io.writes / changes:>11.2f} {entries:>8} {len(ids):>16}")


if __name__ == "__main__":
    main()
