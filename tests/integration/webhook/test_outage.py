"""Issue 21, item 6 through the webhook function, the real Firestore emulator and the
Cloud Tasks emulator: while the queue is unavailable every notification is answered
503 (Google redelivers) without costing writes on the subscription document, and the
first notification once the queue is back queues the request's task."""

from __future__ import annotations

from typing import Any

import pytest

from functions import app as composition
from infra.local import components
from tests.integration.webhook.conftest import WebhookWorld


def test_a_queue_outage_costs_bounded_writes_and_the_first_notification_after_queues(
    webhook_world: WebhookWorld, tasks_emulator: str, tasks_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = webhook_world.open_channel()
    later = f"{tasks_queue}-later"  # a queue that does not exist yet: every enqueue fails
    monkeypatch.setenv("CALSYNC_TASKS_QUEUE", later.rsplit("/", 1)[1])
    composition.reset()
    sub = webhook_world.db.collection("subscriptions").document("sub-1")
    versions: list[Any] = []
    for number in range(2, 14):
        assert webhook_world.post(token=token, number=number).status_code == 503
        versions.append(sub.get().update_time)
    # The request and the failure note, plus at most one last-notification note
    # (every 5 s): not two writes per notification.
    assert len(set(versions)) <= 3, len(set(versions))
    doc = webhook_world.subscription_doc()
    assert doc["requested_gen"] == 1 and doc.get("queued_gen", 0) == 0
    components.create_queue(tasks_emulator, later)  # the queue is back
    response = webhook_world.post(token=token, number=20)
    assert response.status_code == 200 and b"sync queued" in response.data
    assert webhook_world.subscription_doc()["queued_gen"] == 1
    [(_, headers, _)] = webhook_world.worker.wait_for(1)
    assert headers["x-cloudtasks-taskname"].startswith("sync-request-1-")
