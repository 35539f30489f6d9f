"""The example consumer's position (issue 18, item 8), against the real `/v1`
API over the Firestore emulator (entries and snapshots written in the store's
layout by `FeedWriter`): a gap past retention rebootstraps instead of answering
503, the position and the app's copy of events survive a restart, kinds it does
not know are acknowledged and skipped, and no subscription waits on another's
network call."""

from __future__ import annotations

import threading
import urllib.error
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from examples import consumer as example
from functions.adapters.firestore.store import seq_id
from tests.integration.api.feedwriter import FeedWriter, create_subscription, event

from .conftest import ApiOverStore
from .test_consumer import envelope, post

SUB = "7c1e4b2a9d8f4e6a8b0c2d4e6f8a0b1c"
OTHER = "0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a"
PAST = datetime(2020, 1, 1, tzinfo=UTC)


def without_volatile(resource: dict[str, Any]) -> dict[str, Any]:
    # Volatile fields (etag) are stored but never reported on their own.
    return {k: v for k, v in resource.items() if not k.startswith("_") and k != "etag"}


def snapshots(writer: FeedWriter) -> dict[str, dict[str, Any]]:
    """What the store holds now: the copy a consumer must end with."""
    return {event_id: without_volatile(s) for event_id, s in writer.snapshots.items()
            if not s.get("_deleted")}


def copy_of(store: example.SqliteConsumerStore, sub_id: str) -> dict[str, dict[str, Any]]:
    return {event_id: without_volatile(resource)
            for event_id, resource in store.events(sub_id).items()}


def entry_of(writer: FeedWriter, seq: int) -> dict[str, Any]:
    """Entry `seq` as the changes route and a Pub/Sub message carry it."""
    from functions.adapters.firestore import codec
    from functions.model import entry_json

    doc = writer.sub.collection("changes").document(seq_id(seq)).get().to_dict()
    assert doc is not None
    return entry_json(codec.decode_change(doc))


class Consuming:
    """A consumer over the real API, keeping its position in SQLite at `path`."""

    def __init__(self, serve: Callable[[Any], str], api: ApiOverStore, path: Path,
                 **options: Any) -> None:
        self.lines: list[str] = []
        self.store = example.SqliteConsumerStore(str(path))
        self.consumer = example.Consumer(example.ChangesClient(serve(api)), store=self.store,
                                         out=self.lines.append, **options)
        self.url = serve(self.consumer)

    def push(self, item: dict[str, Any], sub_id: str = SUB, **options: Any) -> tuple[int, str]:
        return post(self.url, envelope(item, sub_id=sub_id, **options))


def seqs(lines: list[str]) -> list[int]:
    return [int(line.split("seq ")[1].split(",")[0]) for line in lines if ", seq " in line]


def test_a_gap_past_retention_rebootstraps_instead_of_answering_503(
        firestore_db: Any, real_api: ApiOverStore, serve: Callable[[Any], str],
        tmp_path: Path) -> None:
    create_subscription(firestore_db, SUB)
    writer = FeedWriter(firestore_db, SUB)
    # Entries 1..5 expired long ago (the TTL policy deleted 1..4, 5 not yet).
    writer.commit([event(f"e{n}", f"first {n}") for n in range(1, 4)], expire_at=PAST)
    writer.commit([event("e1", "second 1"), event("e4", "first 4")], expire_at=PAST)
    pushed = [entry_of(writer, seq) for seq in (1, 2)]
    writer.delete_entries(range(1, 5))
    writer.commit([event("e2", "third 2")])
    writer.commit([event("e5", "first 5")], deleted=["e3"])
    assert writer.seq == 8
    app = Consuming(serve, real_api, tmp_path / "state.sqlite3")
    for item in pushed:
        assert app.push(item)[0] == 204
    assert app.store.position(SUB) == 2

    status, reason = app.push(entry_of(writer, 8))  # 3..7 never came
    assert (status, reason) == (204, "")
    assert app.store.position(SUB) == 8
    assert copy_of(app.store, SUB) == snapshots(writer)
    assert app.lines[-1] == (f"subscription {SUB}, bootstrapped at seq 8: 4 events "
                             "(the feed before seq 6 has expired)")
    assert any("/events?" in request for request in real_api.requests)
    # Later pushes follow on from as_of_seq; earlier ones are duplicates.
    assert app.push(entry_of(writer, 7))[0] == 204
    writer.commit([event("e4", "second 4")])
    assert app.push(entry_of(writer, 9))[0] == 204
    assert app.store.position(SUB) == 9
    assert copy_of(app.store, SUB) == snapshots(writer)


def test_a_truncated_marker_past_retention_rebootstraps(
        firestore_db: Any, real_api: ApiOverStore, serve: Callable[[Any], str],
        tmp_path: Path) -> None:
    create_subscription(firestore_db, SUB)
    writer = FeedWriter(firestore_db, SUB)
    writer.commit([event("e1", "one")], expire_at=PAST)
    writer.commit([event("e2", "two")], expire_at=PAST)
    writer.commit([event("e3", "three")])
    app = Consuming(serve, real_api, tmp_path / "state.sqlite3")
    assert app.push(entry_of(writer, 1))[0] == 204
    second = entry_of(writer, 2)
    writer.delete_entries([2])  # what the TTL policy does once entry 2 expired
    # Entry 2 was too large for Pub/Sub: its marker makes the consumer read it.
    assert app.push(second, truncated=True) == (204, "")
    assert app.store.position(SUB) == 3
    assert copy_of(app.store, SUB) == snapshots(writer)


def test_a_restart_keeps_the_position_and_still_fills_an_earlier_gap(
        firestore_db: Any, real_api: ApiOverStore, serve: Callable[[Any], str],
        tmp_path: Path) -> None:
    create_subscription(firestore_db, SUB)
    writer = FeedWriter(firestore_db, SUB)
    for n in range(1, 6):
        writer.commit([event(f"e{n}", f"event {n}")])
    path = tmp_path / "state.sqlite3"
    first = Consuming(serve, real_api, path)
    for seq in (1, 2):
        assert first.push(entry_of(writer, seq))[0] == 204
    first.store.close()

    again = Consuming(serve, real_api, path)  # the process restarted
    assert again.store.position(SUB) == 2
    assert again.push(entry_of(writer, 5)) == (204, "")  # 3 and 4 were lost
    assert seqs(again.lines) == [3, 4, 5]
    assert copy_of(again.store, SUB) == snapshots(writer)
    assert again.push(entry_of(writer, 4))[0] == 204  # a late copy
    assert seqs(again.lines) == [3, 4, 5]


def test_a_subscription_never_seen_is_read_from_the_start_of_the_feed(
        firestore_db: Any, real_api: ApiOverStore, serve: Callable[[Any], str],
        tmp_path: Path) -> None:
    create_subscription(firestore_db, SUB)
    writer = FeedWriter(firestore_db, SUB)
    for n in range(1, 4):
        writer.commit([event(f"e{n}", f"event {n}")])
    writer.commit([event("e1", "event 1 again")], deleted=["e2"])
    app = Consuming(serve, real_api, tmp_path / "state.sqlite3")
    assert app.push(entry_of(writer, 5)) == (204, "")
    assert seqs(app.lines) == [1, 2, 3, 4, 5]
    assert copy_of(app.store, SUB) == snapshots(writer)


def lifecycle_entry(writer: FeedWriter, kind: str,
                    details: dict[str, Any] | None = None) -> int:
    """A lifecycle entry (DESIGN.md: its own kind, a `seq`, no `event_id`)."""
    writer.seq += 1
    now = datetime.now(UTC)
    writer.sub.collection("changes").document(seq_id(writer.seq)).set({
        "seq": writer.seq, "kind": kind, "event_id": None, "recurring_event_id": None,
        "fields": {}, "etag": None, "at": now, "expire_at": now + timedelta(days=30),
        **({"details": details} if details is not None else {})})
    writer.sub.collection("state").document("writer").set({"change_seq": writer.seq},
                                                          merge=True)
    return writer.seq


def test_kinds_it_does_not_know_are_acknowledged_and_skipped(
        firestore_db: Any, real_api: ApiOverStore, serve: Callable[[Any], str],
        tmp_path: Path) -> None:
    create_subscription(firestore_db, SUB)
    writer = FeedWriter(firestore_db, SUB)
    writer.commit([event("e1", "one")])
    resync = lifecycle_entry(writer, "quota_warning")  # another kind it does not know
    writer.commit([event("e2", "two")])
    moved = lifecycle_entry(writer, "calendar_moved")  # a kind from some future version
    writer.commit([event("e1", "one, edited")])
    app = Consuming(serve, real_api, tmp_path / "state.sqlite3")
    assert app.push(entry_of(writer, 1))[0] == 204
    # Pushed; a kind from a later version need not even carry `event_id`.
    pushed = {k: v for k, v in entry_of(writer, resync).items() if k != "event_id"}
    assert app.push(pushed) == (204, "")
    assert app.push(entry_of(writer, writer.seq)) == (204, "")  # `moved` read in the gap
    assert app.store.position(SUB) == writer.seq == 5
    assert copy_of(app.store, SUB) == snapshots(writer)
    assert app.lines[1] == (f"subscription {SUB}, seq {resync}, quota_warning: "
                            "skipped (a kind this consumer does not know)")
    assert app.lines[3] == (f"subscription {SUB}, seq {moved}, calendar_moved: "
                            "skipped (a kind this consumer does not know)")


def test_a_bootstrap_with_changes_committed_between_its_pages(
        firestore_db: Any, real_api: ApiOverStore, serve: Callable[[Any], str],
        tmp_path: Path) -> None:
    create_subscription(firestore_db, SUB)
    writer = FeedWriter(firestore_db, SUB)
    writer.commit([event(f"e{n}", f"event {n}") for n in range(1, 8)], expire_at=PAST)
    writer.delete_entries(range(1, 7))
    writer.commit([event("e1", "event 1, edited")])
    app = Consuming(serve, real_api, tmp_path / "state.sqlite3", page_size=2)
    pages = []

    def between_pages(request: str) -> None:
        if "/events?" in request:
            pages.append(request)
            if len(pages) == 1:  # after the first page: edit a later event, delete one
                writer.commit([event("e6", "event 6, edited")], deleted=["e7"])

    real_api.after.append(between_pages)
    assert app.push(entry_of(writer, 8)) == (204, "")
    assert len(pages) == 3 and app.store.position(SUB) == 8
    real_api.after.clear()
    for seq in (9, 10):  # the edits made meanwhile are pushed after as_of_seq
        assert app.push(entry_of(writer, seq))[0] == 204
    assert copy_of(app.store, SUB) == snapshots(writer)


def test_one_subscription_waiting_on_the_api_does_not_hold_up_another(
        firestore_db: Any, real_api: ApiOverStore, serve_threaded: Callable[[Any], str],
        tmp_path: Path) -> None:
    writers = {}
    for sub_id in (SUB, OTHER):
        create_subscription(firestore_db, sub_id)
        writers[sub_id] = FeedWriter(firestore_db, sub_id)
        for n in (1, 2):
            writers[sub_id].commit([event(f"e{n}", f"{sub_id[:3]} {n}")])
    reached, release = threading.Event(), threading.Event()

    def hold_the_first_subscription(request: str) -> None:
        if f"/{SUB}/" in request:
            reached.set()
            release.wait(30)

    real_api.before.append(hold_the_first_subscription)
    app = Consuming(serve_threaded, real_api, tmp_path / "state.sqlite3")
    answers: list[tuple[int, str]] = []
    held = threading.Thread(target=lambda: answers.append(app.push(entry_of(writers[SUB], 2))))
    held.start()
    try:
        assert reached.wait(30)  # the first push waits inside its gap read
        try:
            other = app.push(entry_of(writers[OTHER], 2), sub_id=OTHER)
        except (urllib.error.URLError, TimeoutError) as err:  # stuck behind the first one
            other = (0, str(err))
        assert other == (204, "")
        assert app.store.position(OTHER) == 2 and app.store.position(SUB) == 0
    finally:
        release.set()
        held.join(30)
    assert answers == [(204, "")] and app.store.position(SUB) == 2
