"""The outbox against the real Pub/Sub emulator and the real Firestore and
Calendar emulators (DESIGN.md, "Delivery (outbox)").

`pubsub_emulator` starts `gcloud beta emulators pubsub start` once per session
(infra/pubsub_emulator.py) and points the client library at it; `pubsub` gives
each test its own topic and an ordered pull subscription on it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import pubsub_emulator
from infra.local.processes import free_port

PROJECT = "calsync-test"
QUIET_SECONDS = 1.0  # after the expected messages, how long no other may come


@pytest.fixture(scope="session")
def pubsub_emulator_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    run_dir: Path = tmp_path_factory.mktemp("pubsub")
    process = pubsub_emulator.start_pubsub(port, run_dir, timeout=90)
    host = f"127.0.0.1:{port}"
    try:
        with pubsub_emulator.emulator_env(host):
            yield host
    finally:
        process.stop()


@dataclass
class Received:
    seq: int
    data: bytes
    attributes: dict[str, str]
    ordering_key: str


class PubSubWorld:
    """One topic and one ordered pull subscription on it."""

    def __init__(self, host: str) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        self.host = host
        self.topic = f"t-{uuid.uuid4().hex[:10]}"
        self.subscription = ""
        self._subscriber = pubsub_v1.SubscriberClient()
        pubsub_emulator.create_topic(PROJECT, self.topic)
        self.attach()

    def attach(self) -> None:
        """A fresh ordered pull subscription (after the topic was re-created)."""
        name = f"s-{uuid.uuid4().hex[:10]}"
        self.subscription = pubsub_emulator.create_subscription(PROJECT, self.topic, name)

    def delete_topic(self) -> None:
        pubsub_emulator.delete_topic(PROJECT, self.topic)

    def recreate_topic(self) -> None:
        pubsub_emulator.create_topic(PROJECT, self.topic)
        self.attach()

    def pull(self, expect: int, wait: float = 20.0) -> list[Received]:
        """Pull and ack until `expect` messages came, then until none has come for
        `QUIET_SECONDS` (or `wait` ran out), so an extra message is seen too."""
        got: list[Received] = []
        deadline = time.monotonic() + wait
        quiet_since = None
        while time.monotonic() < deadline:
            # Long-poll while messages are due. Once they are all here, ask without
            # waiting: the emulator holds an empty long-poll ~4 s, and the quiet check
            # took two of them (8 s a call) where it means to watch for QUIET_SECONDS.
            due = len(got) < expect
            response = self._subscriber.pull(
                request={"subscription": self.subscription, "max_messages": 100,
                         "return_immediately": not due},
                timeout=5, retry=None)
            messages = response.received_messages
            if messages:
                quiet_since = None
                for item in messages:
                    attributes = dict(item.message.attributes)
                    got.append(Received(int(attributes.get("seq", "-1")), item.message.data,
                                        attributes, item.message.ordering_key))
                self._subscriber.acknowledge(request={
                    "subscription": self.subscription,
                    "ack_ids": [m.ack_id for m in messages]})
                continue
            if not due:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > QUIET_SECONDS:
                    break
            time.sleep(0.1)
        return got

    def close(self) -> None:
        self._subscriber.close()


@pytest.fixture
def pubsub(pubsub_emulator_host: str) -> Iterator[PubSubWorld]:
    world = PubSubWorld(pubsub_emulator_host)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def unreachable_pubsub() -> Iterator[str]:
    """A loopback port nothing listens on: publishes there hang, never fail fast."""
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    host = f"127.0.0.1:{free_port()}"
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield host
    finally:
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved
