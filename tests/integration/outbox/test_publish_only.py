"""A publish-only run never strands a sync request (DESIGN.md, "Liveness", and
"Bounded publishing": it leaves the follow-up `commit_final` would).

Through the real task path: the Cloud Tasks emulator dispatches to the worker
served in-process over HTTP (with production's task-name rule enforced around
it), the webhook records the request and queues its task, the real Firestore
and Calendar emulators hold the rest; no renewer runs, so no sweep repairs
anything. The publisher stands in for a Pub/Sub that never answers (see
standins.py), which is what keeps the publish-only run on its lease for its
whole publish timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.firestore.outbox import OutboxFirestoreStore
from functions.adapters.google.calendar import GoogleCalendar, OwnerTokenCredentials
from functions.adapters.google.tasks import CloudTasksQueue, build_client
from functions.config import Settings
from functions.delivery.outbox import Outbox
from functions.intake import channel_tokens
from functions.intake.webhook import Notification, WebhookService
from functions.model import ACTIVE, Channel, Subscription
from functions.sync.engine import Outcome, SyncEngine, SyncSettings
from infra.calendar_emulator.testing import calendar_service
from tests.e2e.conftest import wait_until
from tests.faults.serving import serve_worker
from tests.faults.tasks import NameRuleClient
from tests.integration.liveness.test_deferral import Worker

from .conftest import PROJECT
from .standins import HangingPublisher

USER = "publish-only@example.com"
SUB = "sub-publish-only"
GAP = 1.0  # MIN_SYNC_INTERVAL
PUBLISH_TIMEOUT = 6.0  # how long the publish-only run holds its lease
KEYS = {"t1": b"p" * 32}


@pytest.fixture
def rig(firestore_db: Any, calendar: Any, tasks_emulator: str,
        tasks_queue: str) -> Iterator[tuple[Worker, WebhookService, OutboxFirestoreStore, Any]]:
    _, project, _, region, _, queue_id = tasks_queue.split("/")
    worker = Worker(engine=None)  # type: ignore[arg-type]
    server = serve_worker(worker)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    settings = Settings(project=project, region=region, tasks_queue=queue_id, worker_url=url,
                        tasks_emulator_host=tasks_emulator)
    queue = CloudTasksQueue(settings, client=NameRuleClient(build_client(settings)),
                            queue_path=tasks_queue)
    store = OutboxFirestoreStore(firestore_db)
    calendar_id = calendar.control.add_user(USER)
    api = calendar_service(calendar.base_url, USER)
    store.save_subscription(Subscription(id=SUB, calendar_id=calendar_id, owner=USER,
                                         credentials_ref="bearer"))
    worker.engine = SyncEngine(
        store, GoogleCalendar(OwnerTokenCredentials(), api_endpoint=calendar.api_endpoint),
        queue, SyncSettings(min_sync_interval=GAP, lease_seconds=60),
        outbox=Outbox(store, HangingPublisher(), PROJECT, PUBLISH_TIMEOUT))
    channels = FirestoreChannelStore(firestore_db)
    now = datetime.now(UTC)
    channel_id = channel_tokens.new_channel_id()
    channels.save_channel(Channel(channel_id, SUB, ACTIVE, resource_id="res-publish-only",
                                  expiration=now + timedelta(hours=1)), now)
    webhook = WebhookService(channels=channels, requests=store, queue=queue, keyring=KEYS,
                             record_interval=5.0, min_sync_interval=GAP)
    webhook.channel_id = channel_id  # type: ignore[attr-defined]
    try:
        yield worker, webhook, store, (api, calendar_id)
    finally:
        server.shutdown()
        server.server_close()


def _insert(api: Any, calendar_id: str, summary: str, day: int) -> None:
    api.events().insert(calendarId=calendar_id, body={
        "summary": summary, "start": {"dateTime": f"2026-12-{day:02d}T09:00:00Z"},
        "end": {"dateTime": f"2026-12-{day:02d}T10:00:00Z"}}).execute()


def test_a_request_met_by_a_publish_only_run_is_served_without_the_sweep(rig: Any) -> None:
    worker, webhook, store, (api, calendar_id) = rig
    _insert(api, calendar_id, "first", 1)
    store.record_sync_request(SUB, datetime.now(UTC))
    first = worker.run(SUB)  # synced; Pub/Sub never answers: its entry stays unpublished
    assert first.outcome is Outcome.SYNCED
    state = store.get_writer_state(SUB)
    assert state["published_seq"] == 0 and state["change_seq"] == 1

    # A task with nothing to sync (a sweep's, a duplicate's) starts a publish-only
    # run, which holds the lease for its whole publish timeout.
    publishing = threading.Thread(target=worker.run, args=(SUB,))
    publishing.start()
    generation = state["lease_generation"]
    wait_until(lambda: store.get_writer_state(SUB).get("lease_generation") != generation
               and store.get_writer_state(SUB).get("lease_until"), 10,
               "the publish-only run to take the lease")
    # Meanwhile a change and its notification: the webhook records the request and
    # queues a task, which meets the publish-only run's lease.
    _insert(api, calendar_id, "second", 2)
    channel_id = webhook.channel_id  # type: ignore[attr-defined]
    outcome = webhook.handle(Notification(channel_id, "res-publish-only", "exists", 1,
                                          channel_tokens.sign(channel_id, KEYS)))
    assert outcome.status == 200 and outcome.result == "queued"
    requested = store.get_subscription(SUB).requested_gen  # type: ignore[union-attr]
    publishing.join(PUBLISH_TIMEOUT + 30)
    assert worker.outcomes[:2] == ["synced", "busy"] and worker.outcomes[2] == "idle", (
        f"the request's task did not meet the publish-only run: {worker.outcomes}")

    def served() -> bool:
        return int(store.get_writer_state(SUB).get("synced_gen") or 0) >= requested

    wait_until(served, 60, f"request {requested} to be served (worker outcomes so far: "
                           f"{worker.outcomes})")
    assert [e.kind for e in store.list_changes(SUB, 0, 10).entries] == ["created", "created"]


def test_releasing_a_publish_only_lease_reports_an_unserved_claim(firestore_db: Any) -> None:
    """A sync run claims a request, stalls past its lease, and a publish-only run
    takes the lease: the claim is not a sync, so the release reports the request
    as waiting (the caller queues the follow-up) and the stalled run writes nothing."""
    from functions.errors import LeaseLost
    from functions.ports import PublishProgress

    from .standins import seed_backlog

    seed_backlog(firestore_db, SUB, 3)
    firestore_db.document(f"subscriptions/{SUB}").update({"requested_gen": 2})
    store = OutboxFirestoreStore(firestore_db)
    now = datetime.now(UTC)
    stalled = store.acquire_lease(SUB, now, now + timedelta(seconds=60)).lease
    assert stalled is not None and stalled.claimed_gen == 2
    later = now + timedelta(seconds=61)
    lease = store.acquire_publish_lease(SUB, later, later + timedelta(seconds=60))
    assert lease is not None
    release = store.release_publish_lease(lease, PublishProgress(3), later)
    assert release.request_pending and release.backlog == 0
    with pytest.raises(LeaseLost):
        store.commit_final(stalled, "token-2", later)
    state = store.get_writer_state(SUB)
    assert state["synced_gen"] == 1 and state["published_seq"] == 3
