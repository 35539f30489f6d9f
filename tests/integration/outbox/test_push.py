"""End to end on loopback: a sync publishes through the outbox, the Pub/Sub
emulator pushes to examples/consumer.py, and the consumer prints every change
once, in seq order, filling gaps from a changes route over the same store."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from examples import consumer as example
from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.model import entry_json
from functions.sync.engine import Outcome
from infra import pubsub_emulator

from .conftest import PROJECT, PubSubWorld
from .test_outbox import World


def changes_route(store: OutboxFirestoreStore) -> Any:
    """The changes route's shape over the real store (the api function is
    built elsewhere; this keeps the test to what the consumer relies on)."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        sub_id = environ["PATH_INFO"].split("/")[3]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        cursor, limit = int(query["cursor"][0]), int(query.get("limit", ["100"])[0])
        docs = store.read_entries(sub_id, cursor, cursor + limit)
        body = {"changes": [entry_json(d) for d in docs],
                "next_cursor": int(docs[-1]["seq"]) if docs else cursor,
                "has_more": len(docs) == limit}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]
    return app


def test_pushes_reach_the_example_consumer_once_each_in_seq_order(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld,
        serve: Callable[[Any], str]) -> None:
    world = World(firestore_db, calendar, pubsub)
    lines: list[str] = []
    consumer = example.Consumer(example.ChangesClient(serve(changes_route(world.h.store))),
                                out=lines.append, start_cursors={world.sub_id: 0})
    pubsub_emulator.create_subscription(PROJECT, pubsub.topic, "push-consumer",
                                        push_endpoint=serve(consumer))
    ids = [world.h.insert(f"event {i}", day=i)["id"] for i in range(7)]
    assert world.sync().outcome is Outcome.SYNCED
    world.h.patch(ids[0], summary="Kick-off (all hands)")
    assert world.sync().outcome is Outcome.SYNCED
    deadline = time.monotonic() + 30
    while len(lines) < 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [int(line.split("seq ")[1].split(",")[0]) for line in lines] == list(range(1, 9))
    assert lines[-1] == (f"subscription {world.sub_id}, seq 8, updated: summary "
                         "'event 0' → 'Kick-off (all hands)'")
    assert consumer.applied[world.sub_id] == 8
