"""The example consumer fed by the real pipeline: sync runs publish through the
outbox to the Pub/Sub emulator, which pushes to the consumer (started with the
insecure flag: the emulator sends no token), and gaps are read from the real
`/v1` API over the same Firestore emulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from examples import consumer as example
from functions.sync.engine import Outcome
from infra import pubsub_emulator
from tests.integration.outbox.conftest import PROJECT, PubSubWorld
from tests.integration.outbox.test_outbox import World

from .conftest import ApiOverStore


def test_a_consumer_attached_after_the_first_sync_still_gets_every_event(
        firestore_db: Any, calendar: Any, pubsub: PubSubWorld, real_api: ApiOverStore,
        serve: Callable[[Any], str], tmp_path: Path) -> None:
    world = World(firestore_db, calendar, pubsub)
    ids = [world.h.insert(f"event {i}", day=i + 1)["id"] for i in range(6)]
    assert world.sync().outcome is Outcome.SYNCED  # seq 1..6, before anyone listened
    lines: list[str] = []
    consumer = example.from_env({
        "CALSYNC_API_URL": serve(real_api), "CONSUMER_INSECURE_NO_AUTH": "1",
        "CONSUMER_STATE_PATH": str(tmp_path / "state.sqlite3")}, out=lines.append)
    pubsub_emulator.create_subscription(PROJECT, pubsub.topic, "push-late-consumer",
                                        push_endpoint=serve(consumer))
    world.h.patch(ids[0], summary="Kick-off (all hands)")
    world.h.delete(ids[1])
    assert world.sync().outcome is Outcome.SYNCED  # seq 7, 8: pushed
    store = consumer.store
    deadline = time.monotonic() + 30
    while store.position(world.sub_id) < 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.position(world.sub_id) == 8
    assert [int(line.split("seq ")[1].split(",")[0]) for line in lines] == list(range(1, 9))
    copy = {event_id: resource["summary"] for event_id, resource in
            store.events(world.sub_id).items()}
    assert copy == {ids[0]: "Kick-off (all hands)",
                    **{ids[i]: f"event {i}" for i in range(2, 6)}}
