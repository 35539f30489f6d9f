"""How a run reacts to Pub/Sub refusing messages as invalid, with a scripted
publisher over the real store: the service refuses a whole batch when one
message in it is invalid and then pauses the ordering key, so the run re-sends
the first refused message alone, and only a message refused alone becomes a
`truncated=true` marker. Order and density of seq are kept throughout."""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.delivery.outbox import Outbox
from functions.errors import PublishRefused
from functions.ports import OutMessage, Publisher
from functions.sync.engine import Outcome, SyncEngine, SyncSettings
from tests.integration.sync.harness import Harness


class ScriptedPublisher(Publisher):
    """Refuses every message whose fields say "invalid", and once the first copy
    of the message whose fields mention `batch_victim` (as if it shared a batch
    with an invalid one); after a refusal the key is paused until `resume`, like
    the real client."""

    def __init__(self, batch_victim: str) -> None:
        self.accepted: list[tuple[int, bool]] = []  # (seq, is a marker)
        self.paused = False
        self.victim = batch_victim
        self.resumes = 0

    def resume(self, ordering_key: str) -> None:
        self.resumes += 1
        self.paused = False

    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        future: Future[str] = Future()
        seq = int(message.attributes["seq"])
        marker = message.attributes.get("truncated") == "true"
        fields = json.dumps(json.loads(message.data).get("fields", {}))
        victim = bool(self.victim) and self.victim in fields
        if self.paused:
            future.set_exception(RuntimeError("ordering key paused"))
        elif victim or ("invalid" in fields and not marker):
            if victim:
                self.victim = ""
            self.paused = True
            future.set_exception(PublishRefused("400 invalid message in batch"))
        else:
            self.accepted.append((seq, marker))
            future.set_result(f"id-{seq}")
        return future


def test_a_batch_refusal_resends_alone_and_marks_only_the_invalid_message(
        firestore_db: Any, calendar: Any) -> None:
    h = Harness(firestore_db, calendar, "alice@example.com")
    h.store = OutboxFirestoreStore(firestore_db)
    for i in range(6):
        h.insert("invalid one" if i == 3 else f"event {i}", day=i)
    publisher = ScriptedPublisher(batch_victim="event 2")
    engine = SyncEngine(h.store, h.calendar, h.queue, SyncSettings(page_size=50),
                        clock=h.clock, outbox=Outbox(h.store, publisher, "calsync-test", 5.0))
    h.request()
    assert engine.run(h.sub.id).outcome is Outcome.SYNCED
    invalid_seq = next(e.seq for e in h.feed() if e.fields["summary"]["after"] == "invalid one")
    assert [seq for seq, _ in publisher.accepted] == [1, 2, 3, 4, 5, 6]
    assert [seq for seq, marker in publisher.accepted if marker] == [invalid_seq]
    assert publisher.victim == ""  # the batch's innocent victim was refused once,
    # then went out whole, alone (it is not among the markers)
    state = h.store.get_writer_state(h.sub.id)
    assert state["published_seq"] == 6 and state.get("publish_pending_since") is None


def test_a_refused_marker_stops_the_run_and_leaves_the_rest_pending(
        firestore_db: Any, calendar: Any) -> None:
    class RefusesAll(ScriptedPublisher):
        def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
            if message.attributes["seq"] == "2":
                self.paused = True
                future: Future[str] = Future()
                future.set_exception(PublishRefused("bad topic settings"))
                return future
            return super().submit(ordering_key, message)

    h = Harness(firestore_db, calendar, "alice@example.com")
    h.store = OutboxFirestoreStore(firestore_db)
    for i in range(4):
        h.insert(f"event {i}", day=i)
    publisher = RefusesAll(batch_victim="")
    engine = SyncEngine(h.store, h.calendar, h.queue, SyncSettings(page_size=50),
                        clock=h.clock, outbox=Outbox(h.store, publisher, "calsync-test", 5.0))
    h.request()
    assert engine.run(h.sub.id).outcome is Outcome.SYNCED
    assert publisher.accepted == [(1, False)]
    state = h.store.get_writer_state(h.sub.id)
    assert state["published_seq"] == 1 and state["change_seq"] == 4
    assert state["publish_pending_since"] is not None
