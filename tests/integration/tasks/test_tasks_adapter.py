"""The Cloud Tasks adapter through the real google-cloud-tasks client and emulator."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from functions.adapters.google.tasks import CloudTasksQueue, task_id
from functions.config import Settings
from functions.errors import QueueUnavailable
from infra.local.processes import free_port
from tests.receiver import Receiver

KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def _settings(tasks_host: str, worker_url: str) -> Settings:
    return Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": "calsync-test", "CALSYNC_REGION": "local",
        "CALSYNC_TASKS_QUEUE": "unused", "CALSYNC_WORKER_URL": worker_url,
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:1/", "CALSYNC_CHANNEL_TOKEN_KEYS": f"k:{KEY}",
        "CALSYNC_TASKS_INVOKER_SA": "invoker@calsync-test.iam.gserviceaccount.com",
        "CLOUD_TASKS_EMULATOR_HOST": tasks_host,
    })


def test_sync_task_reaches_the_worker_with_its_body(
    tasks_emulator: str, tasks_queue: str, receiver: Receiver
) -> None:
    queue = CloudTasksQueue(_settings(tasks_emulator, receiver.url), queue_path=tasks_queue)
    queue.enqueue_sync("sub-1", 3)
    [(_, headers, body)] = receiver.wait_for(1)
    assert json.loads(body) == {"subscription_id": "sub-1"}
    assert headers["content-type"] == "application/json"
    assert headers["x-cloudtasks-taskname"] == task_id("sub-1", "request", 3)


def test_scheduled_task_waits_until_not_before(
    tasks_emulator: str, tasks_queue: str, receiver: Receiver
) -> None:
    queue = CloudTasksQueue(_settings(tasks_emulator, receiver.url), queue_path=tasks_queue)
    queued_at = time.monotonic()
    queue.enqueue_sync("sub-2", 1, datetime.now(UTC) + timedelta(seconds=2), origin="run")
    [(arrived, _, body)] = receiver.wait_for(1)
    assert json.loads(body) == {"subscription_id": "sub-2"}
    assert arrived - queued_at >= 1.5


def test_task_carries_an_oidc_token_request_for_the_invoker(tasks_emulator: str) -> None:
    settings = _settings(tasks_emulator, "https://worker.example/")
    queue = CloudTasksQueue(settings, client=object(), queue_path="projects/p/locations/l/queues/q")
    task = queue.build_task("sub-3", 7, None, origin="request")
    assert task.http_request.oidc_token.service_account_email == settings.tasks_invoker_sa
    assert task.http_request.oidc_token.audience == "https://worker.example/"
    assert task.name.startswith("projects/p/locations/l/queues/q/tasks/sync-request-7-")


def test_names_are_deterministic_and_distinct_per_origin_and_generation() -> None:
    assert task_id("s", "request", 1) == task_id("s", "request", 1)
    names = {task_id("s", o, g) for o in ("request", "run", "retry") for g in (1, 2)}
    assert len(names) == 6
    assert task_id("s/with/slash", "request", 1).replace("-", "").isalnum()


def test_unreachable_queue_raises_queue_unavailable(tasks_emulator: str) -> None:
    settings = _settings(f"127.0.0.1:{free_port()}", "http://127.0.0.1:1/")
    queue = CloudTasksQueue(settings, queue_path="projects/p/locations/l/queues/q")
    with pytest.raises(QueueUnavailable, match="sub-4"):
        queue.enqueue_sync("sub-4", 1)


def test_missing_queue_raises_queue_unavailable(tasks_emulator: str) -> None:
    settings = _settings(tasks_emulator, "http://127.0.0.1:1/")
    queue = CloudTasksQueue(settings, queue_path="projects/p/locations/l/queues/absent")
    with pytest.raises(QueueUnavailable):
        queue.enqueue_sync("sub-5", 1)


def test_renewer_continuation_reaches_the_renewer(
    tasks_emulator: str, tasks_queue: str, receiver: Receiver
) -> None:
    base = _settings(tasks_emulator, "http://127.0.0.1:1/")
    from dataclasses import replace

    queue = CloudTasksQueue(replace(base, renewer_url=receiver.url), queue_path=tasks_queue)
    queue.enqueue_renewal()
    [(_, headers, body)] = receiver.wait_for(1)
    assert body == b"{}" and headers["content-type"] == "application/json"


def test_renewer_continuation_without_a_renewer_url_is_refused(tasks_emulator: str) -> None:
    queue = CloudTasksQueue(_settings(tasks_emulator, "http://127.0.0.1:1/"),
                            queue_path="projects/p/locations/l/queues/q")
    with pytest.raises(QueueUnavailable, match="CALSYNC_RENEWER_URL"):
        queue.enqueue_renewal()
