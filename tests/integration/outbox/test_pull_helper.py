"""The tests' pull helper sees every message, one beyond those expected too: the
outbox tests rely on it to show nothing is published twice or out of turn."""

from __future__ import annotations

import threading
import time

from tests.integration.outbox.conftest import PROJECT, QUIET_SECONDS, PubSubWorld


def _publish(world: PubSubWorld, *seqs: int) -> None:
    import google.cloud.pubsub_v1 as pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(PROJECT, world.topic)
    for seq in seqs:
        publisher.publish(topic, f"m{seq}".encode(), seq=str(seq)).result(timeout=30)


def test_a_message_beyond_those_expected_is_pulled_too(pubsub: PubSubWorld) -> None:
    _publish(pubsub, 1, 2, 3)
    assert sorted(m.seq for m in pubsub.pull(2)) == [1, 2, 3]


def test_a_message_published_within_the_quiet_window_is_pulled_too(
        pubsub: PubSubWorld) -> None:
    _publish(pubsub, 1)
    late = threading.Timer(QUIET_SECONDS / 2, _publish, args=(pubsub, 2))
    late.start()
    started = time.monotonic()
    try:
        got = sorted(m.seq for m in pubsub.pull(1))
    finally:
        late.join()
    assert got == [1, 2], f"pulled {got} in {time.monotonic() - started:.1f}s"
