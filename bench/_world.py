"""Shared bench setup: a Firestore emulator (own, or the local stack's under a project of
its own), an in-process Calendar emulator, a seeded calendar, and document reads and
writes counted at the Firestore client.

Reads and writes are counted on the wire, below every store (`count_io`): each document
a lookup or query returns is a read, an empty query is billed as one read, each write
in a commit is a write. Stores can change their methods freely without the benches
miscounting or breaking.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _stack import environment, read_stack_env  # noqa: E402

from functions.adapters.firestore.store import FirestoreStore  # noqa: E402
from functions.adapters.google.calendar import GoogleCalendar, OwnerTokenCredentials  # noqa: E402
from functions.model import Subscription  # noqa: E402

PROJECT = "calsync-bench"
USER = "bench@example.com"


# -- counting documents on the wire ----------------------------------------------------


@dataclass
class IoCount:
    """Document reads and writes as Firestore bills them, and RPCs by name."""

    reads: int = 0
    writes: int = 0
    calls: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.reads = self.writes = 0
        self.calls.clear()

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1


def _has(message: Any, name: str) -> bool:
    pb = getattr(message, "_pb", message)
    try:
        return bool(pb.HasField(name))
    except ValueError:
        return False


def _writes(request: Any) -> int:
    """Writes in a commit request (a dict or a message); a transform on a write is free."""
    writes = request.get("writes") if isinstance(request, dict) else getattr(request, "writes",
                                                                              None)
    return len(writes or [])


class _CountingApi:
    """Delegates to the GAPIC Firestore client, counting what its RPCs read and write."""

    def __init__(self, api: Any, count: IoCount) -> None:
        self._api = api
        self._count = count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def _stream(self, name: str, responses: Iterable[Any], is_doc: Callable[[Any], bool],
                minimum: int) -> Iterator[Any]:
        self._count._call(name)
        seen = 0
        for response in responses:
            if is_doc(response):
                seen += 1
                self._count.reads += 1
            yield response
        if seen < minimum:
            self._count.reads += minimum - seen

    def batch_get_documents(self, *args: Any, **kwargs: Any) -> Any:
        # Found or missing, each document asked for is a read.
        return self._stream("batch_get_documents",
                            self._api.batch_get_documents(*args, **kwargs),
                            lambda r: _has(r, "found") or _has(r, "missing"), 0)

    def run_query(self, *args: Any, **kwargs: Any) -> Any:
        return self._stream("run_query", self._api.run_query(*args, **kwargs),
                            lambda r: _has(r, "document"), 1)

    def run_aggregation_query(self, *args: Any, **kwargs: Any) -> Any:
        return self._stream("run_aggregation_query",
                            self._api.run_aggregation_query(*args, **kwargs),
                            lambda r: _has(r, "result"), 1)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self._count._call("commit")
        self._count.writes += _writes(kwargs.get("request", args[0] if args else None))
        return self._api.commit(*args, **kwargs)

    def batch_write(self, *args: Any, **kwargs: Any) -> Any:
        self._count._call("batch_write")
        self._count.writes += _writes(kwargs.get("request", args[0] if args else None))
        return self._api.batch_write(*args, **kwargs)


def count_io(client: Any) -> IoCount:
    """Count the document reads and writes of everything done through `client`."""
    count = IoCount()
    api = client._firestore_api  # builds the GAPIC client (and its channel) once
    client._firestore_api_internal = _CountingApi(api, count)
    return count


# -- emulators ----------------------------------------------------------------------------


@dataclass
class FirestoreTarget:
    host: str
    project: str
    shared: bool  # the local stack's emulator: only our own project is touched


@contextmanager
def firestore_emulator(stack_env: Path | None) -> Iterator[FirestoreTarget]:
    """A Firestore emulator, with FIRESTORE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT set.

    With `stack_env`, the stack's emulator under a project no one else uses (the
    emulator keeps each project's documents apart), emptied again on exit;
    otherwise an emulator of our own, stopped on exit.
    """
    from infra.local import components

    if stack_env is not None:
        host = read_stack_env(stack_env)["FIRESTORE_EMULATOR_HOST"]
        project = f"{PROJECT}-{uuid.uuid4().hex[:8]}"
        with environment({"FIRESTORE_EMULATOR_HOST": host, "GOOGLE_CLOUD_PROJECT": project}):
            try:
                yield FirestoreTarget(host, project, shared=True)
            finally:
                components.reset_firestore(host, project)
        return

    from infra.local.processes import free_port

    port = free_port()
    host = f"{components.HOST}:{port}"
    with tempfile.TemporaryDirectory(prefix="calsync-bench-firestore-") as run_dir:
        started = time.perf_counter()
        process = components.start_firestore(port, Path(run_dir), timeout=90)
        print(f"firestore emulator up in {time.perf_counter() - started:.1f}s", flush=True)
        try:
            with environment({"FIRESTORE_EMULATOR_HOST": host, "GOOGLE_CLOUD_PROJECT": PROJECT}):
                yield FirestoreTarget(host, PROJECT, shared=False)
        finally:
            process.stop()


@contextmanager
def emulators(stack_env: Path | None = None) -> Iterator[tuple[Any, Any]]:
    """(firestore client, running in-process calendar emulator), both gone on exit."""
    from google.cloud import firestore

    from infra.calendar_emulator.testing import running_emulator

    with firestore_emulator(stack_env) as target, running_emulator() as calendar:
        client = firestore.Client(project=target.project)
        try:
            yield client, calendar
        finally:
            client.close()


def seed(calendar: Any, count: int, user: str = USER, series_every: int = 0) -> None:
    """`count` events (a tenth of them with a description) in `user`'s calendar; with
    `series_every`, one event in that many is a weekly recurring series (listed as one
    item, as `singleEvents=false` lists it)."""
    batch = []
    for i in range(count):
        day = 1 + i % 28
        event: dict[str, Any] = {
            "summary": f"event {i}", "start": {"dateTime": f"2031-03-{day:02d}T09:00:00Z"},
            "end": {"dateTime": f"2031-03-{day:02d}T10:00:00Z"}}
        if i % 10 == 0:
            event["description"] = "agenda " * 20
        if series_every and i % series_every == 1:
            event["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=10"]
        batch.append(event)
        if len(batch) == 2000:
            calendar.control.bulk_insert_events(user, batch, user=user)
            batch = []
    if batch:
        calendar.control.bulk_insert_events(user, batch, user=user)


def subscription(store: FirestoreStore, sub_id: str, user: str = USER) -> Subscription:
    sub = Subscription(id=sub_id, calendar_id="primary", owner=user, credentials_ref="bearer")
    store.save_subscription(sub)
    return sub


def calendar_port(calendar: Any) -> GoogleCalendar:
    return GoogleCalendar(OwnerTokenCredentials(), api_endpoint=calendar.api_endpoint)


class NullQueue:
    def enqueue_sync(self, *args: Any, **kwargs: Any) -> None:
        pass


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fail(message: str) -> NoReturn:
    """The bench measured something other than what it claims: say so, exit non-zero."""
    print(f"BENCH INVALID: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)

