"""The webhook over HTTP against the real Firestore and Cloud Tasks emulators."""

from __future__ import annotations

import json
from typing import Any

from functions.intake import channel_tokens
from tests.integration.webhook.conftest import KEYS, WebhookWorld


def test_valid_notification_records_a_request_and_queues_one_task(
    webhook_world: WebhookWorld,
) -> None:
    token = webhook_world.open_channel()
    response = webhook_world.post(token=token)
    assert response.status_code == 200, response.data
    doc = webhook_world.subscription_doc()
    assert doc["requested_gen"] == 1 and doc["queued_gen"] == 1
    [(_, _, body)] = webhook_world.worker.wait_for(1)
    assert json.loads(body) == {"subscription_id": "sub-1"}


def test_burst_while_pending_writes_nothing_and_queues_nothing_more(
    webhook_world: WebhookWorld,
) -> None:
    token = webhook_world.open_channel()
    assert webhook_world.post(token=token).status_code == 200
    before = webhook_world.subscription_doc()
    for number in range(3, 40):
        assert webhook_world.post(token=token, number=number).status_code == 200
    after = webhook_world.subscription_doc()
    assert after["requested_gen"] == 1
    # Only the first notification wrote the bookkeeping fields (5 s interval).
    assert after["last_message_number"] == before["last_message_number"] == 2
    webhook_world.worker.wait_for(2, timeout=2)
    assert len(webhook_world.worker.requests) == 1


def test_forged_notifications_record_and_enqueue_nothing(webhook_world: WebhookWorld) -> None:
    token = webhook_world.open_channel()
    forged = [
        webhook_world.post(token=None),
        webhook_world.post(token="v1.k1.AAAA"),
        webhook_world.post(token=channel_tokens.sign("ch-1", {"k1": b"x" * 32})),
        webhook_world.post(token=token, resource_id="res-other"),
        webhook_world.post(channel_id="ch-unknown", token=channel_tokens.sign("ch-unknown", KEYS)),
    ]
    assert [r.status_code for r in forged] == [403, 403, 403, 403, 200]
    doc = webhook_world.subscription_doc()
    assert doc.get("requested_gen", 0) == 0 and "last_message_number" not in doc
    channel = webhook_world.channels.get_channel("ch-1")
    assert channel is not None and channel.last_notification_at is None
    webhook_world.worker.wait_for(1, timeout=1.5)
    assert webhook_world.worker.requests == []


def test_pending_channel_learns_resource_id_then_enforces_it(webhook_world: WebhookWorld) -> None:
    token = webhook_world.open_channel(resource_id=None, state="pending")
    assert webhook_world.post(token=token, state="sync", number=1,
                              resource_id="res-9").status_code == 200
    channel = webhook_world.channels.get_channel("ch-1")
    assert channel is not None and channel.resource_id == "res-9"
    assert webhook_world.subscription_doc().get("requested_gen", 0) == 0
    assert webhook_world.post(token=token, resource_id="res-1").status_code == 403
    assert webhook_world.post(token=token, resource_id="res-9").status_code == 200


def test_enqueue_failure_answers_503_and_keeps_the_request(
    webhook_world: WebhookWorld, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    token = webhook_world.open_channel()
    monkeypatch.setenv("CALSYNC_TASKS_QUEUE", "queue-that-does-not-exist")
    from functions import app as composition

    composition.reset()
    response = webhook_world.post(token=token)
    assert response.status_code == 503
    doc = webhook_world.subscription_doc()
    assert doc["requested_gen"] == 1 and doc.get("queued_gen", 0) == 0


def test_methods_and_malformed_headers_get_one_line_reasons(webhook_world: WebhookWorld) -> None:
    assert webhook_world.client.get("/").status_code == 405
    assert webhook_world.client.put("/").status_code == 405
    response = webhook_world.client.post("/", headers={"X-Goog-Channel-ID": "ch-1"})
    assert response.status_code == 400
    assert response.data.decode().count("\n") == 1
    assert "X-Goog-Resource-State" in response.data.decode()


def test_the_notification_log_line_says_when_the_task_was_queued(
    webhook_world: WebhookWorld, capsys: Any,
) -> None:
    """The "notification" line carries the handler's time (`duration_s`) and the time to
    its task's creation (`queued_s`): bench/end_to_end.py cuts a write's path there."""
    token = webhook_world.open_channel()
    capsys.readouterr()
    assert webhook_world.post(token=token).status_code == 200
    assert webhook_world.post(token=token, number=3).status_code == 200  # coalesced
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{") and '"message":"notification"' in line]
    assert [line["result"] for line in lines] == ["queued", "coalesced"]
    queued, coalesced = lines
    assert 0 <= queued["queued_s"] <= queued["duration_s"]
    assert coalesced["queued_s"] is None and coalesced["duration_s"] >= 0
