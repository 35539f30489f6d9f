"""Verify first, bounded numbers, per-channel bookkeeping: against the real emulators.

Firestore reads are counted at the Firestore client's RPC layer (every document
read, query and transactional read goes through one of these methods), so
"no read" means no RPC that reads left the process.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

from functions import app as composition
from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.google.tasks import CloudTasksQueue
from functions.config import WEBHOOK, Settings
from functions.intake import channel_tokens, webhook
from functions.intake.webhook import Notification, WebhookService
from functions.model import Channel
from tests.integration.webhook.conftest import KEYS, WebhookWorld

READ_RPCS = ("get_document", "batch_get_documents", "run_query", "list_documents",
             "run_aggregation_query", "partition_query")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names of the Firestore read RPCs made from this process while the test runs."""
    calls: list[str] = []
    for name in READ_RPCS:
        original = getattr(FirestoreClient, name)

        def counted(self: Any, *args: Any, _name: str = name, _original: Any = original,
                    **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(FirestoreClient, name, counted)
    yield calls


def test_forged_notifications_cost_no_firestore_read(
    webhook_world: WebhookWorld, reads: list[str]
) -> None:
    token = webhook_world.open_channel()
    assert webhook_world.post(token=token).status_code == 200  # warm: the service exists
    assert reads, "the counter sees the reads a valid notification makes"
    reads.clear()
    forged = [
        webhook_world.post(token=None),  # known channel, no token
        webhook_world.post(token=""),
        webhook_world.post(token="v1.k1.AAAA"),
        webhook_world.post(token="v1.k7.AAAA"),  # unknown key id
        webhook_world.post(token=channel_tokens.sign("ch-1", {"k1": b"x" * 32})),
        webhook_world.post(token=channel_tokens.sign("ch-2", KEYS)),  # another channel's
        webhook_world.post(channel_id="ch-unknown", token=None),
        webhook_world.post(channel_id="ch-unknown", token="v1.k1.AAAA"),
    ]
    assert [r.status_code for r in forged] == [403] * len(forged)
    assert all(r.data.decode().count("\n") == 1 for r in forged)
    assert reads == []


def test_signed_notification_for_an_unknown_channel_is_acknowledged(
    webhook_world: WebhookWorld,
) -> None:
    response = webhook_world.post(channel_id="ch-deleted",
                                  token=channel_tokens.sign("ch-deleted", KEYS))
    assert response.status_code == 200 and b"unknown channel" in response.data


@pytest.mark.parametrize("number", [str(2**63), "18446744073709551615", "99999999999999999999"])
def test_message_number_beyond_int64_is_400_and_records_nothing(
    webhook_world: WebhookWorld, number: str
) -> None:
    token = webhook_world.open_channel()
    response = webhook_world.client.post("/", headers={
        "X-Goog-Channel-ID": "ch-1", "X-Goog-Channel-Token": token,
        "X-Goog-Resource-ID": "res-1", "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": number})
    assert response.status_code == 400
    assert b"X-Goog-Message-Number" in response.data
    assert webhook_world.subscription_doc().get("requested_gen", 0) == 0


def test_largest_int64_message_number_is_stored(webhook_world: WebhookWorld) -> None:
    token = webhook_world.open_channel()
    assert webhook_world.post(token=token, number=2**63 - 1).status_code == 200
    channel = webhook_world.channels.get_channel("ch-1")
    assert channel is not None and channel.last_message_number == 2**63 - 1


class CountingChannels(FirestoreChannelStore):
    """The real adapter, counting record_notification attempts and successes."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.attempts = 0
        self.written = 0

    def record_notification(self, channel: Channel, message_number: int,
                            now: datetime) -> datetime | None:
        self.attempts += 1
        version = super().record_notification(channel, message_number, now)
        self.written += version is not None
        return version


def test_last_notification_is_written_once_per_interval_across_instances(
    webhook_world: WebhookWorld, firestore_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two webhook instances (own Firestore clients, own caches) on one channel:
    a 20 s burst on a simulated clock writes the bookkeeping 4-5 times, not per
    instance, though each instance finds it due."""
    from google.cloud import firestore

    t0 = datetime.now(UTC).replace(microsecond=0)
    webhook_world.open_channel()
    webhook_world.db.collection("channels").document("ch-1").update(
        {"last_notification_at": t0 - timedelta(seconds=4)})
    clock = [t0]
    tick = [1000.0]
    monkeypatch.setattr(webhook.time, "monotonic", lambda: tick[0])
    settings = Settings.from_env(function=WEBHOOK)
    instances, stores = [], []
    for _ in range(2):
        client = firestore.Client(project=settings.project)
        channels = CountingChannels(client)
        stores.append(channels)
        instances.append(WebhookService(channels, FirestoreStore(client), CloudTasksQueue(settings),
                                        KEYS, record_interval=5, min_sync_interval=2,
                                        clock=lambda: clock[0]))
    token = channel_tokens.sign("ch-1", KEYS)
    seen: list[datetime] = []
    for n in range(80):  # 20 s at 4 notifications/s, alternating instances
        clock[0] = t0 + timedelta(seconds=n * 0.25)
        tick[0] = 1000.0 + n * 0.25
        outcome = instances[n % 2].handle(Notification("ch-1", "res-1", "exists", n + 2, token))
        assert outcome.status == 200
        stored = webhook_world.channels.get_channel("ch-1")
        assert stored is not None and stored.last_notification_at is not None
        if not seen or stored.last_notification_at != seen[-1]:
            seen.append(stored.last_notification_at)
    writes = seen[1:]  # seen[0] is the value set up above
    assert 4 <= len(writes) <= 5, writes
    assert all(b - a >= timedelta(seconds=5) for a, b in zip(writes, writes[1:], strict=False))
    assert sum(s.written for s in stores) == len(writes)
    assert all(s.attempts >= 1 for s in stores)  # each instance found it due
    assert sum(s.attempts for s in stores) > len(writes)  # and lost a race
    sub = webhook_world.subscription_doc()
    assert sub["last_notification_at"] == seen[-1]  # the subscription's copy moves with it
    composition.reset()
