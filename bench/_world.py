"""Shared bench setup: a Firestore emulator and a Calendar emulator, a seeded calendar,
and a store that counts the documents it reads and writes."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from functions.calendar_api import GoogleCalendar, OwnerTokenCredentials  # noqa: E402
from functions.model import Subscription  # noqa: E402
from functions.store import FirestoreStore  # noqa: E402

PROJECT = "calsync-bench"
USER = "bench@example.com"


@contextmanager
def emulators() -> Iterator[tuple[Any, Any]]:
    """(firestore client, running calendar emulator), both stopped on exit."""
    from google.cloud import firestore

    from infra.calendar_emulator.testing import running_emulator
    from infra.local import components
    from infra.local.processes import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as run_dir:
        process = components.start_firestore(port, Path(run_dir), timeout=90)
        os.environ["FIRESTORE_EMULATOR_HOST"] = f"{components.HOST}:{port}"
        os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
        try:
            with running_emulator() as calendar:
                client = firestore.Client(project=PROJECT)
                try:
                    yield client, calendar
                finally:
                    client.close()
        finally:
            process.stop()


def seed(calendar: Any, count: int) -> None:
    """`count` single events (a tenth of them with a description) in USER's calendar."""
    batch = []
    for i in range(count):
        day = 1 + i % 28
        event = {"summary": f"event {i}", "start": {"dateTime": f"2031-03-{day:02d}T09:00:00Z"},
                 "end": {"dateTime": f"2031-03-{day:02d}T10:00:00Z"}}
        if i % 10 == 0:
            event["description"] = "agenda " * 20
        batch.append(event)
        if len(batch) == 2000:
            calendar.control.bulk_insert_events(USER, batch, user=USER)
            batch = []
    if batch:
        calendar.control.bulk_insert_events(USER, batch, user=USER)


def subscription(store: FirestoreStore, sub_id: str) -> Subscription:
    sub = Subscription(id=sub_id, calendar_id="primary", owner=USER, credentials_ref="bearer")
    store.save_subscription(sub)
    return sub


def calendar_port(calendar: Any) -> GoogleCalendar:
    return GoogleCalendar(OwnerTokenCredentials(), api_endpoint=calendar.api_endpoint)


class CountingStore(FirestoreStore):
    """The real store, counting document reads and writes (as Firestore bills them)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.reads = 0
        self.writes = 0

    def acquire_lease(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 2
        self.writes += 1
        return super().acquire_lease(*args, **kwargs)

    def extend_lease(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        self.writes += 1
        return super().extend_lease(*args, **kwargs)

    def load_snapshots(self, sub_id: str, event_ids: Any) -> Any:
        found = super().load_snapshots(sub_id, event_ids)
        self.reads += len(found)
        return found

    def load_exception_ids(self, sub_id: str, series_id: str) -> Any:
        found = super().load_exception_ids(sub_id, series_id)
        self.reads += max(1, len(found))
        return found

    def has_events(self, sub_id: str) -> bool:
        self.reads += 1
        return super().has_events(sub_id)

    def iter_live_ids(self, sub_id: str, batch_size: int) -> Any:
        for batch in super().iter_live_ids(sub_id, batch_size):
            self.reads += max(1, len(batch))
            yield batch

    def commit_page(self, lease: Any, writes: Any, now: Any, until: Any) -> None:
        super().commit_page(lease, writes, now, until)
        self.reads += 1
        self.writes += 1 + sum(w.write_count for w in writes)

    def commit_final(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 2
        self.writes += 2
        return super().commit_final(*args, **kwargs)


class NullQueue:
    def enqueue_sync(self, *args: Any, **kwargs: Any) -> None:
        pass


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
