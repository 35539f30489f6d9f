"""Calendar-list tasks through the real google-cloud-tasks client and emulator: the body
names the account, the name is its own (`list-`), deterministic per request."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from functions.adapters.google.tasks import CloudTasksQueue, account_task_id, task_id
from functions.sync.worker import AccountTask, SyncTask, parse_task
from tests.integration.tasks.test_tasks_adapter import _settings
from tests.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def test_an_account_task_reaches_the_worker_with_its_body(
    tasks_emulator: str, tasks_queue: str, receiver: Receiver
) -> None:
    queue = CloudTasksQueue(_settings(tasks_emulator, receiver.url), queue_path=tasks_queue)
    queue.enqueue_account_sync("acct-1", 4)
    [(_, headers, body)] = receiver.wait_for(1)
    assert json.loads(body) == {"account_id": "acct-1"}
    assert headers["x-cloudtasks-taskname"] == account_task_id("acct-1", "request", 4)
    assert parse_task(body) == AccountTask("acct-1")


def test_account_task_names_never_meet_subscription_task_names() -> None:
    assert account_task_id("x", "request", 1) == account_task_id("x", "request", 1)
    assert account_task_id("x", "request", 1).startswith("list-request-1-")
    names = {account_task_id("x", o, g) for o in ("request", "run", "sweep1") for g in (1, 2)}
    assert len(names) == 6
    # The same id as a subscription and as an account: two tasks, two names.
    assert account_task_id("x", "request", 1) != task_id("x", "request", 1)
    assert parse_task(json.dumps({"subscription_id": "x"}).encode()) == SyncTask("x")
