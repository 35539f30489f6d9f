"""The bootstrap protocol under concurrent changes (DESIGN.md, "Bootstrap").

A writer thread commits pages of changes (entries and snapshots in one atomic
batch, dense `seq`) while a consumer reads the events page by page and then
follows the changes from `as_of_seq`. Between two pages the consumer waits for
the writer to commit again, so every page is read with changes in between.
Folding the pages and then the changes must give exactly the final snapshots:
no gap, and re-applied entries are harmless.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from functions.adapters.firestore.feed import FirestoreFeedStore
from functions.api.feed import ChangesQuery, Feed
from functions.api.tokens import PageTokens
from tests.integration.api.feedwriter import FeedWriter, create_subscription, event


class Writer(threading.Thread):
    def __init__(self, writer: FeedWriter, seed: int, commits: int) -> None:
        super().__init__(daemon=True)
        self.writer = writer
        self.rng = random.Random(seed)
        self.commits = commits
        self.progress = threading.Condition()
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for _ in range(self.commits):
                self._one_commit()
                with self.progress:
                    self.done += 1
                    self.progress.notify_all()
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err
            with self.progress:
                self.progress.notify_all()

    def _one_commit(self) -> None:
        live = [i for i, s in self.writer.snapshots.items() if not s.get("_deleted")]
        upserts: dict[str, dict[str, Any]] = {}
        deleted: set[str] = set()
        for _ in range(self.rng.randint(1, 3)):
            choice = self.rng.random()
            if choice < 0.3 or not live:
                event_id = f"e{self.rng.randint(0, 60):03d}"
                upserts[event_id] = event(event_id, f"s{self.rng.random():.6f}")
            elif choice < 0.8:
                event_id = self.rng.choice(live)
                current = {k: v for k, v in self.writer.snapshots[event_id].items()
                           if not k.startswith("_")}
                current[self.rng.choice(["summary", "location"])] = f"{self.rng.random():.6f}"
                upserts[event_id] = current
            else:
                deleted.add(self.rng.choice(live))
        # one entry per event per commit, as commit_page guarantees
        self.writer.commit(list(upserts.values()), deleted=sorted(deleted - set(upserts)))

    def wait_for(self, count: int) -> None:
        with self.progress:
            self.progress.wait_for(lambda: self.done >= min(count, self.commits)
                                   or self.error is not None, timeout=60)


def without_volatile(resource: dict[str, Any]) -> dict[str, Any]:
    # Volatile fields (etag, ...) are stored but never reported on their own.
    return {k: v for k, v in resource.items() if not k.startswith("_") and k != "etag"}


def fold(state: dict[str, dict[str, Any]], entry: dict[str, Any]) -> None:
    event_id = entry["event_id"]
    if entry["kind"] == "deleted":
        state.pop(event_id, None)
        return
    current = {} if entry["kind"] == "created" else dict(state.get(event_id, {}))
    for name, change in entry["fields"].items():
        if change["after"] is None:
            current.pop(name, None)
        else:
            current[name] = change["after"]
    state[event_id] = current


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bootstrap_then_follow_equals_final_snapshots(firestore_db: Any, seed: int) -> None:
    create_subscription(firestore_db, "boot")
    feed_writer = FeedWriter(firestore_db, "boot")
    feed_writer.commit([event(f"e{i:03d}", "initial") for i in range(0, 60, 2)])
    feed = Feed(FirestoreFeedStore(firestore_db), PageTokens([b"k" * 32]))
    writer = Writer(feed_writer, seed, commits=40)
    writer.start()

    state: dict[str, dict[str, Any]] = {}
    token: str | None = None
    as_of: int | None = None
    pages = 0
    while True:
        page = feed.events("boot", token, 4, False)
        as_of = page.as_of_seq if as_of is None else as_of
        assert page.as_of_seq == as_of
        for item in page.events:
            assert not item["deleted"]
            state[item["event_id"]] = item["event"]
        pages += 1
        writer.wait_for(pages)  # at least one commit between any two pages
        token = page.next_page_token
        if token is None:
            break
    changed_while_paging = feed_writer.seq - as_of
    writer.join(timeout=120)
    assert writer.error is None
    assert not writer.is_alive()
    assert changed_while_paging > 0 and pages > 3

    cursor = as_of
    while True:
        changes = feed.changes("boot", ChangesQuery(cursor=cursor, limit=7))
        for entry in changes.changes:
            fold(state, entry)
        cursor = changes.next_cursor
        if not changes.has_more:
            break
    assert cursor == feed_writer.seq
    final = {event_id: without_volatile(snapshot)
             for event_id, snapshot in feed_writer.snapshots.items()
             if not snapshot.get("_deleted")}
    assert {event_id: without_volatile(r) for event_id, r in state.items()} == final
