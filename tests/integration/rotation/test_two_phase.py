"""Two-phase key rotation on the local stack: the webhook and the worker through
functions-framework's real apps, Firestore, Cloud Tasks and Calendar emulators.

Function instances read their keys when they start, so during a rollout old and
new instances serve side by side. Each phase below is one such instance.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions import app as composition
from functions import logs
from functions.adapters.firestore.credentials import CredentialVault
from functions.adapters.firestore.store import FirestoreStore
from functions.cli.main import main
from functions.intake import channel_tokens
from functions.model import Subscription
from infra.calendar_emulator.testing import calendar_service
from tests.receiver import Receiver

MAIN = str(Path(__file__).resolve().parents[3] / "main.py")
CHANNEL = {"k1": b"c" * 32, "k2": b"C" * 32}
CREDENTIAL = {"k1": b"s" * 32, "k2": b"S" * 32}
USER = "rota@example.com"
REFRESH = "rt-rotation-e2e-secret"
TRACE_KEY = "logging.googleapis.com/trace"


def _ring(keys: dict[str, bytes], *ids: str) -> str:
    return ",".join(f"{i}:{base64.b64encode(keys[i]).decode()}" for i in ids)


@dataclass
class Stack:
    db: Any
    store: FirestoreStore
    monkeypatch: pytest.MonkeyPatch
    sent: dict[str, str] = field(default_factory=dict)  # execution id -> trace id

    def instance(self, target: str, channel_ids: tuple[str, ...],
                 credential_ids: tuple[str, ...]) -> Any:
        """A freshly started function instance with these keyrings."""
        import functions_framework

        self.monkeypatch.setenv("CALSYNC_CHANNEL_TOKEN_KEYS", _ring(CHANNEL, *channel_ids))
        self.monkeypatch.setenv("CALSYNC_CREDENTIAL_KEYS", _ring(CREDENTIAL, *credential_ids))
        composition.reset()
        return functions_framework.create_app(target=target, source=MAIN).test_client()

    def _headers(self) -> dict[str, str]:
        n = len(self.sent) + 1
        execution, trace = f"exec-{n}", f"{n:032x}"
        self.sent[execution] = trace
        return {"Function-Execution-Id": execution, "X-Cloud-Trace-Context": f"{trace}/7;o=1"}

    def notify(self, webhook: Any, channel_id: str, token: str, number: int) -> int:
        headers = {"X-Goog-Channel-ID": channel_id, "X-Goog-Resource-State": "exists",
                   "X-Goog-Resource-ID": f"res-{channel_id}",
                   "X-Goog-Message-Number": str(number), "X-Goog-Channel-Token": token,
                   **self._headers()}
        return int(webhook.post("/", headers=headers).status_code)

    def run_sync(self, worker: Any, sub_id: str) -> str:
        answer = worker.post("/", json={"subscription_id": sub_id}, headers=self._headers())
        assert answer.status_code == 200, answer.data
        return str(answer.get_data(as_text=True).strip())

    def open_channel(self, channel_id: str, signer: tuple[str, ...]) -> str:
        """What a renewer instance with keyring `signer` writes and signs."""
        keyring = {i: CHANNEL[i] for i in signer}
        self.db.collection("channels").document(channel_id).set({
            "sub_id": "sub-1", "state": "active", "resource_id": f"res-{channel_id}",
            "expiration": datetime.now(UTC) + timedelta(days=7),
            "created_at": datetime.now(UTC), "token_key_id": signer[0],
            "last_notification_at": None, "last_message_number": 0, "renewal_attempts": 0})
        return channel_tokens.sign(channel_id, keyring)


@pytest.fixture
def stack(firestore_db: Any, tasks_emulator: str, tasks_queue: str, calendar: Any,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    worker = Receiver()
    _, _, _, region, _, queue = tasks_queue.split("/")
    for name, value in {
        "CALSYNC_REGION": region, "CALSYNC_TASKS_QUEUE": queue,
        "CALSYNC_WORKER_URL": worker.url, "CLOUD_TASKS_EMULATOR_HOST": tasks_emulator,
        "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:9/webhook",
        "CALENDAR_API_ENDPOINT": calendar.api_endpoint,
        "CALSYNC_OAUTH_CLIENT_ID": "client-rotation", "CALSYNC_OAUTH_CLIENT_SECRET": "shh-rot",
        "CALSYNC_OAUTH_TOKEN_URI": calendar.token_uri, "CALSYNC_JSON_LOGS": "true",
        "CALSYNC_MIN_SYNC_INTERVAL_SECONDS": "0.001",
        # One budget share (it holds 48 calls): the runs here come faster than one of
        # sixteen shares (3 calls, 0.5 a second) refills, and budgets are not the point.
        "CALSYNC_USER_BUDGET_SHARDS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    logs.reset()
    store = FirestoreStore(firestore_db)
    store.save_subscription(Subscription(id="sub-1", calendar_id="primary", owner="x@e.com"))
    try:
        yield Stack(firestore_db, store, monkeypatch)
    finally:
        composition.reset()
        logs.reset()
        worker.close()


def test_channels_signed_with_either_key_are_accepted_throughout_the_rotation(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    old_token = stack.open_channel("ch-old", signer=("k1",))
    # The one-step rotation this procedure replaces: a renewer already on k2 signs
    # a channel that an instance still on the old keyring rejects (Google drops it).
    one_step_token = stack.open_channel("ch-early", signer=("k2", "k1"))
    still_old = stack.instance("webhook", ("k1",), ("k1",))
    assert stack.notify(still_old, "ch-early", one_step_token, 2) == 403

    # Phase 1: k2 appended as accepted, every function rolled.
    phase1 = stack.instance("webhook", ("k1", "k2"), ("k1", "k2"))
    # Phase 2 starts: fresh renewer instances sign with k2 while phase-1 webhook
    # instances are still warm.
    new_token = stack.open_channel("ch-new", signer=("k2", "k1"))
    assert stack.notify(phase1, "ch-old", old_token, 3) == 200
    assert stack.notify(phase1, "ch-new", new_token, 2) == 200
    phase2 = stack.instance("webhook", ("k2", "k1"), ("k2", "k1"))
    assert stack.notify(phase2, "ch-old", old_token, 4) == 200
    assert stack.notify(phase2, "ch-new", new_token, 3) == 200

    # k1 stays while a delivering channel was signed with it.
    report = _rotate(stack, "k2", "k1")
    assert report["channel_token_keys"]["in_use"] == {"k1": 1, "k2": 2}
    assert report["channel_token_keys"]["removable"] == []
    # The renewer replaces ch-old (new channel under k2 first, then stops the old one).
    renewed_token = stack.open_channel("ch-renewed", signer=("k2", "k1"))
    stack.db.collection("channels").document("ch-old").update({"state": "stopped"})
    stack.db.collection("channels").document("ch-early").update({"state": "stopped"})
    assert _rotate(stack, "k2", "k1")["channel_token_keys"]["removable"] == ["k1"]

    # Phase 3: k1 removed.
    phase3 = stack.instance("webhook", ("k2",), ("k2",))
    assert stack.notify(phase3, "ch-new", new_token, 4) == 200
    assert stack.notify(phase3, "ch-renewed", renewed_token, 2) == 200
    _assert_log_lines(stack, capsys.readouterr().out, minimum=7)


def test_tokens_sealed_under_the_old_key_open_until_rotate_keys_reseals_them(
    stack: Stack, calendar: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    calendar.control.register_refresh_token(REFRESH, USER)
    api = calendar_service(calendar.base_url, USER)
    for n in range(2):
        api.events().insert(calendarId="primary", body={
            "summary": f"rota {n}", "start": {"date": f"2031-03-{n + 1:02d}"},
            "end": {"date": f"2031-03-{n + 2:02d}"}}).execute()
    # Subscribed before the rotation: the token is sealed under k1.
    ref = CredentialVault(stack.db, {"k1": CREDENTIAL["k1"]}).store_refresh_token(REFRESH)
    stack.store.save_subscription(Subscription(id="sub-o", calendar_id="primary", owner=USER,
                                               credentials_ref=ref))

    # Phase 1 and phase 2 workers both open it.
    phase1 = stack.instance("sync_worker", ("k1", "k2"), ("k1", "k2"))
    # Its first run opens the channel (the task's one call), the follow-up lists.
    assert stack.run_sync(phase1, "sub-o") == "continued"
    assert stack.run_sync(phase1, "sub-o") == "synced"
    phase2 = stack.instance("sync_worker", ("k2", "k1"), ("k2", "k1"))
    api.events().insert(calendarId="primary", body={
        "summary": "during", "start": {"date": "2031-04-01"},
        "end": {"date": "2031-04-02"}}).execute()
    stack.store.record_sync_request("sub-o", datetime.now(UTC))
    assert stack.run_sync(phase2, "sub-o") == "synced"

    report = _rotate(stack, "k2", "k1")
    assert report["credential_keys"]["resealed"] == 1
    assert report["credential_keys"]["removable"] == ["k1"]

    # Phase 3: k1 is gone, and the re-sealed token still opens.
    phase3 = stack.instance("sync_worker", ("k2",), ("k2",))
    api.events().insert(calendarId="primary", body={
        "summary": "after", "start": {"date": "2031-05-01"},
        "end": {"date": "2031-05-02"}}).execute()
    stack.store.record_sync_request("sub-o", datetime.now(UTC))
    assert stack.run_sync(phase3, "sub-o") == "synced"
    feed = stack.store.list_changes("sub-o", 0, 100).entries
    assert [entry.kind for entry in feed] == ["created"] * 4
    assert stack.store.get_subscription("sub-o").status == "active"
    lines = _assert_log_lines(stack, capsys.readouterr().out, minimum=3)
    runs = [line for line in lines if line["message"] == "sync run"]
    assert [(r["subscription"], r["outcome"]) for r in runs] == [
        ("sub-o", "continued")] + [("sub-o", "synced")] * 3


def _rotate(stack: Stack, *credential_ids: str) -> dict[str, Any]:
    stack.monkeypatch.setenv("CALSYNC_CREDENTIAL_KEYS", _ring(CREDENTIAL, *credential_ids))
    composition.reset()
    out = io.StringIO()
    assert main(["rotate-keys", "--json", "--channel-key-ids", "k2,k1"], out=out) == 0
    return dict(json.loads(out.getvalue()))


def _assert_log_lines(stack: Stack, out: str, minimum: int) -> list[dict[str, Any]]:
    """Every line is JSON with severity and the trace of the request that caused it,
    and no key, channel token or refresh token value appears in any line."""
    secrets = [base64.b64encode(key).decode() for key in (*CHANNEL.values(),
                                                          *CREDENTIAL.values())]
    secrets += [REFRESH, "shh-rot", "v1.k1.", "v1.k2."]
    lines = []
    for raw in out.splitlines():
        assert not any(secret in raw for secret in secrets), raw[:200]
        line = json.loads(raw)
        assert line["severity"] in ("DEBUG", "INFO", "WARNING", "ERROR") and line["message"]
        trace = stack.sent[line["execution_id"]]
        assert line[TRACE_KEY] == f"projects/{composition.settings().project}/traces/{trace}"
        lines.append(line)
    assert len(lines) >= minimum
    return lines
