"""Events/second for listing a 20,000-event calendar through the real google-api-python-client.

Runs the emulator in its own process (as in the local stack), bulk-inserts the
events through the control API, then times a full listing and an incremental
listing after changing 1 % of the events. Prints figures; exits non-zero only if a
listing did not return what was written (then the figures measure something else).

    .venv/bin/python bench/emulator_list.py [--events 20000] [--page-size 2500] [--smoke]

`--smoke`: 500 events in pages of 100 (a few seconds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _stack import add_bench_args, parse  # noqa: E402

from infra.calendar_emulator.control import EmulatorControl  # noqa: E402
from infra.calendar_emulator.testing import calendar_service  # noqa: E402

USER = "bench@example.com"


def _start_emulator() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.calendar_emulator", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    return process, line.rsplit(" ", 1)[-1]


def _events(count: int) -> list[dict[str, Any]]:
    return [
        {
            "summary": f"Event {index}",
            "description": "Benchmark event with a little text in it.",
            "location": "Room 4",
            "start": {"dateTime": f"2025-{index % 12 + 1:02d}-{index % 28 + 1:02d}T09:00:00Z"},
            "end": {"dateTime": f"2025-{index % 12 + 1:02d}-{index % 28 + 1:02d}T10:00:00Z"},
            "attendees": [
                {"email": f"person{index % 50}@example.com", "responseStatus": "accepted"}
            ],
        }
        for index in range(count)
    ]


def _list_all(service: Any, page_size: int, sync_token: str | None = None) -> tuple[int, int, str]:
    """(items, calls, nextSyncToken) of a complete paged listing."""
    items = calls = 0
    page_token = None
    while True:
        params: dict[str, Any] = {"calendarId": "primary", "maxResults": page_size}
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        response = service.events().list(**params).execute()
        calls += 1
        items += len(response.get("items", []))
        page_token = response.get("nextPageToken")
        if not page_token:
            return items, calls, response["nextSyncToken"]


def main() -> None:
    """Run the benchmark and print figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=None, help="default 20,000 (smoke: 500)")
    parser.add_argument("--page-size", type=int, default=None,
                        help="default 2500 (smoke: 100)")
    add_bench_args(parser, stack=False)  # its own emulator process: cheap, nothing to share
    args = parse(parser)
    events = args.events or (500 if args.smoke else 20_000)
    page_size = args.page_size or (100 if args.smoke else 2500)

    process, base_url = _start_emulator()
    try:
        control = EmulatorControl(base_url)
        started = time.perf_counter()
        ids = control.bulk_insert_events(USER, _events(events))
        print(f"bulk insert: {len(ids)} events in {time.perf_counter() - started:.2f} s")
        service = calendar_service(base_url, USER)

        control.reset_counters()
        started = time.perf_counter()
        items, calls, sync_token = _list_all(service, page_size)
        elapsed = time.perf_counter() - started
        if items != events:
            raise SystemExit(f"BENCH INVALID: full listing returned {items} of {events} events")
        print(
            f"full listing: {items} events, {calls} events.list calls, {elapsed:.2f} s, "
            f"{items / elapsed:,.0f} events/s"
        )

        changed = ids[::100]
        for index, event_id in enumerate(changed):
            if index % 2:
                service.events().delete(calendarId="primary", eventId=event_id).execute()
            else:
                service.events().patch(
                    calendarId="primary", eventId=event_id, body={"summary": f"changed {index}"}
                ).execute()
        control.reset_counters()
        started = time.perf_counter()
        items, calls, _ = _list_all(service, page_size, sync_token)
        elapsed = time.perf_counter() - started
        if items != len(changed):
            raise SystemExit(f"BENCH INVALID: incremental listing returned {items} items "
                             f"for {len(changed)} changes")
        print(
            f"incremental listing ({len(changed)} changes): {items} events, "
            f"{calls} events.list calls, "
            f"{elapsed * 1000:.1f} ms, {items / elapsed:,.0f} events/s"
        )
        print(f"emulator counters: {control.counters()}")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
