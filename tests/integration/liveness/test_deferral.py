"""A deferral never deletes the only task (DESIGN.md, "Cloud Tasks rules the emulator
does not enforce").

Production refuses a task name for about an hour; the emulator does not. So the
queue here is the real `CloudTasksQueue` over a client double that enforces the
name rule around the real emulator client, and the Cloud Tasks emulator
dispatches to a worker served in-process over HTTP. The worker's clock runs a
little behind the queue's (as two machines' clocks do), so the follow-up a
notification queues for "MIN_SYNC_INTERVAL after the last run started" arrives
early by the worker's clock and is deferred, and its retry is deferred again.
The request must still be served: some task for it must survive every deferral.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.google.calendar import GoogleCalendar, OwnerTokenCredentials
from functions.adapters.google.tasks import CloudTasksQueue, build_client
from functions.config import Settings
from functions.intake import channel_tokens
from functions.intake.webhook import Notification, WebhookService
from functions.model import ACTIVE, Channel, Subscription
from functions.sync.engine import SyncEngine, SyncReport, SyncSettings
from infra.calendar_emulator.testing import calendar_service
from tests.e2e.conftest import wait_until
from tests.faults.serving import serve_worker
from tests.faults.tasks import NameRuleClient

USER = "deferral@example.com"
SUB = "sub-deferral"
GAP = 3.0  # MIN_SYNC_INTERVAL
SKEW = timedelta(seconds=1.5)  # the worker's clock is this far behind the queue's
KEYS = {"t1": b"k" * 32}


@dataclass
class Worker:
    """The sync worker behind an HTTP address the Tasks emulator can dispatch to."""

    engine: SyncEngine
    url: str = ""
    outcomes: list[str] = field(default_factory=list)

    def run(self, sub_id: str) -> SyncReport:
        report = self.engine.run(sub_id)
        self.outcomes.append(report.outcome.value)
        return report


@pytest.fixture
def rig(firestore_db: Any, calendar: Any, tasks_emulator: str,
        tasks_queue: str) -> Iterator[tuple[Worker, NameRuleClient, WebhookService, Any]]:
    _, project, _, region, _, queue_id = tasks_queue.split("/")
    worker = Worker(engine=None)  # type: ignore[arg-type]
    server = serve_worker(worker)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    settings = Settings(project=project, region=region, tasks_queue=queue_id, worker_url=url,
                        tasks_emulator_host=tasks_emulator)
    client = NameRuleClient(build_client(settings))
    queue = CloudTasksQueue(settings, client=client, queue_path=tasks_queue)
    store = FirestoreStore(firestore_db)
    calendar_id = calendar.control.add_user(USER)
    api = calendar_service(calendar.base_url, USER)
    api.events().insert(calendarId=calendar_id, body={
        "summary": "first", "start": {"dateTime": "2026-12-01T09:00:00Z"},
        "end": {"dateTime": "2026-12-01T10:00:00Z"}}).execute()
    store.save_subscription(Subscription(id=SUB, calendar_id=calendar_id, owner=USER,
                                         credentials_ref="bearer"))
    worker.engine = SyncEngine(
        store, GoogleCalendar(OwnerTokenCredentials(), api_endpoint=calendar.api_endpoint),
        queue, SyncSettings(min_sync_interval=GAP, lease_seconds=30),
        clock=lambda: datetime.now(UTC) - SKEW)
    channels = FirestoreChannelStore(firestore_db)
    now = datetime.now(UTC)
    channel_id = channel_tokens.new_channel_id()
    channels.save_channel(Channel(channel_id, SUB, ACTIVE, resource_id="res-deferral",
                                  expiration=now + timedelta(hours=1)), now)
    webhook = WebhookService(channels=channels, requests=store, queue=queue, keyring=KEYS,
                             record_interval=5.0, min_sync_interval=GAP)
    webhook.channel_id = channel_id  # type: ignore[attr-defined]
    try:
        yield worker, client, webhook, (store, api, calendar_id)
    finally:
        server.shutdown()
        server.server_close()


def notify(webhook: WebhookService, number: int) -> str:
    channel_id = webhook.channel_id  # type: ignore[attr-defined]
    outcome = webhook.handle(Notification(channel_id, "res-deferral", "exists", number,
                                          channel_tokens.sign(channel_id, KEYS)))
    assert outcome.status == 200, outcome
    return outcome.result


def test_name_rule_double_refuses_a_reused_name_around_the_real_emulator(
        tasks_emulator: str, tasks_queue: str) -> None:
    client = NameRuleClient(build_client(Settings(
        project="p", region="r", tasks_queue="q", worker_url="http://127.0.0.1:9/",
        tasks_emulator_host=tasks_emulator)))
    task = tasks_v2.Task(name=f"{tasks_queue}/tasks/once", http_request={
        "http_method": tasks_v2.HttpMethod.POST, "url": "http://127.0.0.1:9/"},
        schedule_time={"seconds": 4102444800})  # far future: never dispatched
    client.create_task(parent=tasks_queue, task=task)
    with pytest.raises(gexc.AlreadyExists):
        client.create_task(parent=tasks_queue, task=task)
    names = [t.name for t in client.list_tasks(parent=tasks_queue)]
    assert names == [task.name]  # the emulator itself holds it once
    assert client.refused == [task.name]


def test_a_follow_up_deferred_twice_still_gets_served(rig: Any) -> None:
    worker, client, webhook, (store, api, calendar_id) = rig
    assert notify(webhook, 1) == "queued"
    wait_until(lambda: int(store.get_writer_state(SUB).get("synced_gen") or 0) >= 1, 30,
               "the first sync")
    # Right after that run: a change, and its notification; the webhook queues the
    # follow-up for MIN_SYNC_INTERVAL after the last run started.
    api.events().insert(calendarId=calendar_id, body={
        "summary": "second", "start": {"dateTime": "2026-12-02T09:00:00Z"},
        "end": {"dateTime": "2026-12-02T10:00:00Z"}}).execute()
    assert notify(webhook, 2) == "queued"
    requested = store.get_subscription(SUB).requested_gen

    def served() -> bool:
        return int(store.get_writer_state(SUB).get("synced_gen") or 0) >= requested

    try:
        wait_until(served, 20, "the deferred follow-up to be served")
    except AssertionError as err:
        left = [t.name.rsplit("/", 1)[-1] for t in client.list_tasks(parent=client_queue(rig))]
        raise AssertionError(
            f"{err}: request {requested} pending with no task behind it. Worker outcomes "
            f"{worker.outcomes}; names refused as reused {client.refused}; tasks left in "
            f"the queue {left}") from None
    assert [e.kind for e in store.list_changes(SUB, 0, 10).entries] == ["created", "created"]


def client_queue(rig: Any) -> str:
    worker = rig[0]
    return str(worker.engine._queue.queue_path)
