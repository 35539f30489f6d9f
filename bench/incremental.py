"""Incremental sync cost on a 20,000-event calendar for 1, 100 and 5,000 changed events.

    .venv/bin/python bench/incremental.py [--events 20000]

Prints, per batch of changes: Calendar API calls (target ceil(changes/2500)),
Firestore document reads and writes per change (target 2 writes per changed
event plus O(1)), and the items a "list everything and compare `sequence`"
approach would fetch for the same change (a full listing every time).
"""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime

from _world import (
    USER,
    CountingStore,
    NullQueue,
    calendar_port,
    emulators,
    seed,
    subscription,
)

from functions.sync import SyncEngine, SyncSettings
from infra.calendar_emulator.testing import calendar_service


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    with emulators() as (db, calendar):
        seed(calendar, args.events)
        store = CountingStore(db)
        sub = subscription(store, "bench-incremental")
        engine = SyncEngine(store, calendar_port(calendar), NullQueue(),  # type: ignore[arg-type]
                            # One run's cost is measured here, not the pacing between runs.
                            SyncSettings(page_size=2500, min_sync_interval=0.01))
        assert engine.run(sub.id).outcome.value == "synced"
        api = calendar_service(calendar.base_url, USER)
        ids = [item["id"] for item in calendar.control.dump_events(USER)]
        print(f"incremental sync on a {len(ids)}-event calendar (Firestore + Calendar emulators)")
        print(f"{'changes':>8} {'cal calls':>10} {'target':>7} {'reads':>7} {'writes':>7} "
              f"{'reads/chg':>10} {'writes/chg':>11} {'entries':>8} {'full-list items':>16}")
        for round_, changes in enumerate((1, 100, 5000)):
            for event_id in ids[:changes]:
                api.events().patch(calendarId="primary", eventId=event_id,
                                   body={"summary": f"changed {round_}"}).execute()
            # What the webhook does for the notification (not counted: the
            # webhook's cost, measured by bench/webhook.py).
            store.record_sync_request(sub.id, datetime.now(UTC))
            calendar.control.reset_counters()
            store.reads = store.writes = 0
            report = engine.run(sub.id)
            assert report.outcome.value == "synced", report
            counters = calendar.control.counters()
            calls = counters.get("calls", {}).get("events.list", report.pages)
            print(f"{changes:>8} {calls:>10} {math.ceil(changes / 2500):>7} {store.reads:>7} "
                  f"{store.writes:>7} {store.reads / changes:>10.2f} "
                  f"{store.writes / changes:>11.2f} {sum(report.entries.values()):>8} "
                  f"{len(ids):>16}")


if __name__ == "__main__":
    main()
