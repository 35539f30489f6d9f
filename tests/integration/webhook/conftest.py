"""The webhook function through functions-framework's real Flask app, wired to the
real Firestore emulator and a fresh Cloud Tasks emulator queue per test."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from functions import app as composition
from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.firestore.store import FirestoreStore
from functions.intake import channel_tokens
from functions.model import Channel, Subscription
from tests.receiver import Receiver

KEYS = {"k1": b"w" * 32}


@dataclass
class WebhookWorld:
    client: Any  # Flask test client of the webhook function
    store: FirestoreStore
    channels: FirestoreChannelStore
    worker: Receiver  # where queued sync tasks land
    db: Any

    def open_channel(self, channel_id: str = "ch-1", sub_id: str = "sub-1",
                     resource_id: str | None = "res-1", state: str = "active") -> str:
        self.channels.save_channel(Channel(channel_id, sub_id, state, resource_id=resource_id),
                                   datetime.now(UTC))
        return channel_tokens.sign(channel_id, KEYS)

    def post(self, channel_id: str = "ch-1", state: str = "exists", number: int = 2,
             resource_id: str = "res-1", token: str | None = None,
             extra: dict[str, str] | None = None) -> Any:
        headers = {"X-Goog-Channel-ID": channel_id, "X-Goog-Resource-State": state,
                   "X-Goog-Resource-ID": resource_id, "X-Goog-Message-Number": str(number),
                   "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/x"}
        if token is not None:
            headers["X-Goog-Channel-Token"] = token
        headers.update(extra or {})
        return self.client.post("/", headers=headers)

    def subscription_doc(self, sub_id: str = "sub-1") -> dict[str, Any]:
        return self.db.collection("subscriptions").document(sub_id).get().to_dict() or {}


@pytest.fixture
def webhook_world(
    firestore_db: Any, tasks_emulator: str, tasks_queue: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WebhookWorld]:
    import functions_framework

    worker = Receiver()
    project, _, location, _, queue = tasks_queue.split("/")[1:6]
    env = {
        "GOOGLE_CLOUD_PROJECT": project, "CALSYNC_REGION": location,
        "CALSYNC_TASKS_QUEUE": queue, "CALSYNC_WORKER_URL": worker.url,
        "CLOUD_TASKS_EMULATOR_HOST": tasks_emulator,
        "CALSYNC_CHANNEL_TOKEN_KEYS": "k1:" + base64.b64encode(KEYS["k1"]).decode(),
        "CALSYNC_NOTIFICATION_RECORD_SECONDS": "5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    composition.reset()
    app = functions_framework.create_app(target="webhook", source=os.path.join(
        os.path.dirname(__file__), "..", "..", "..", "main.py"))
    store = FirestoreStore(firestore_db)
    store.save_subscription(Subscription(id="sub-1", calendar_id="primary", owner="alice"))
    try:
        yield WebhookWorld(app.test_client(), store, FirestoreChannelStore(firestore_db),
                           worker, firestore_db)
    finally:
        composition.reset()
        worker.close()
