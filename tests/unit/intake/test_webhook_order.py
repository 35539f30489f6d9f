"""The webhook queues a notification's sync before its bookkeeping write (issue 19
item 6): the last-notification fields are written after the request is recorded and
its task queued, so the run the task starts never waits for them."""

from __future__ import annotations

from datetime import datetime

import pytest

from functions.intake.webhook import WebhookService
from functions.model import Channel

from .test_webhook_service import KEYS, T0, FakeChannels, FakeQueue, FakeRequests, note


def test_the_task_is_queued_before_the_bookkeeping_write() -> None:
    order: list[str] = []

    class Channels(FakeChannels):
        def record_notification(self, channel: Channel, message_number: int,
                                now: datetime) -> datetime | None:
            order.append("bookkeeping")
            return super().record_notification(channel, message_number, now)

    class Queue(FakeQueue):
        def enqueue_sync(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            order.append("task")
            super().enqueue_sync(*args, **kwargs)

    channels, requests, queue = Channels(), FakeRequests(), Queue()
    channels.put(Channel("ch-1", "sub-1", "active", resource_id="res-1"))
    service = WebhookService(channels, requests, queue, KEYS, record_interval=5,
                             min_sync_interval=2, clock=lambda: T0)
    outcome = service.handle(note())
    assert (outcome.status, outcome.result) == (200, "queued")
    assert order == ["task", "bookkeeping"]
    assert channels.recorded == [("ch-1", 2)]
    assert outcome.writes == 4  # the request, its queued mark, the channel and subscription


def test_a_request_that_fails_answers_503_and_records_nothing() -> None:
    """The notification is redelivered (503) and recorded then."""
    from functions.errors import StoreUnavailable

    class Requests(FakeRequests):
        def record_sync_request(self, sub_id, now):  # type: ignore[no-untyped-def]
            raise StoreUnavailable("firestore down")

    channels, queue = FakeChannels(), FakeQueue()
    channels.put(Channel("ch-1", "sub-1", "active", resource_id="res-1"))
    service = WebhookService(channels, Requests(), queue, KEYS, record_interval=5,
                             min_sync_interval=2, clock=lambda: T0)
    with pytest.raises(StoreUnavailable):  # the entry point answers 503
        service.handle(note())
    assert channels.recorded == [] and queue.tasks == []


def test_the_outcome_says_when_the_task_was_queued() -> None:
    """`queued_s` (seconds from the notification's arrival to its task's creation) is in
    the log line, so bench/end_to_end.py can cut a write's path at the task; a
    notification that queues nothing has none."""
    channels, requests, queue = FakeChannels(), FakeRequests(), FakeQueue()
    channels.put(Channel("ch-1", "sub-1", "active", resource_id="res-1"))
    service = WebhookService(channels, requests, queue, KEYS, record_interval=5,
                             min_sync_interval=2, clock=lambda: T0)
    queued = service.handle(note())
    assert queued.result == "queued" and len(queue.tasks) == 1
    assert queued.queued_s is not None and queued.queued_s >= 0
    coalesced = service.handle(note(number=3))
    assert coalesced.result == "coalesced" and coalesced.queued_s is None
