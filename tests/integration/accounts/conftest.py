"""Accounts against the real emulators: Firestore, and the Calendar emulator reached
through the real client with OAuth refresh tokens (its `/token` endpoint), its
pushes delivered to the real webhook service served on loopback.

Tasks are recorded by a queue double and run by `drain` through the real worker
(sync runs and calendar-list runs), in order, as Cloud Tasks would deliver them.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore.accounts import AccountFirestoreStore
from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.firestore.credentials import CredentialVault
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.adapters.google.calendar import GoogleCalendar
from functions.adapters.google.calendar_list import GoogleCalendarList
from functions.adapters.google.channels import GoogleChannels
from functions.adapters.google.credentials import GoogleCredentialsProvider
from functions.config import Settings
from functions.errors import QueueUnavailable
from functions.intake.webhook import BadNotification, WebhookService, parse_notification
from functions.lifecycle.account_channels import AccountChannels
from functions.lifecycle.account_renewal import AccountRenewal
from functions.lifecycle.account_sync import AccountSync, AccountSyncSettings
from functions.lifecycle.accounts import AccountService
from functions.lifecycle.renewer import Renewer
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import ChangeEntry
from functions.ports import AccountTaskQueue, CallBudget, TaskQueue
from functions.sync.engine import SyncEngine, SyncSettings
from functions.sync.worker import SyncWorker

KEY = base64.b64encode(b"a" * 32).decode()
ANN = "ann@example.com"
BOB = "bob@example.com"


class DrainQueue(TaskQueue, AccountTaskQueue):
    """Records tasks (a body and a name each, as Cloud Tasks keeps them); `refuse` fails
    the next enqueues as the queue would."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, bytes, datetime | None]] = []
        self.names: list[str] = []
        self.refuse = 0
        self._lock = threading.Lock()

    def _add(self, name: str, body: dict[str, str], not_before: datetime | None) -> None:
        with self._lock:
            if self.refuse:
                self.refuse -= 1
                raise QueueUnavailable("queue refused (injected)")
            if name in self.names:
                return  # Cloud Tasks refuses a name it has seen: the same task once
            self.names.append(name)
            self.tasks.append((name, json.dumps(body).encode(), not_before))

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        self._add(f"sync-{origin}-{generation}-{sub_id}", {"subscription_id": sub_id},
                  not_before)

    def enqueue_account_sync(self, account_id: str, generation: int,
                             not_before: datetime | None = None, *,
                             origin: str = "request") -> None:
        self._add(f"list-{origin}-{generation}-{account_id}", {"account_id": account_id},
                  not_before)

    def take(self) -> tuple[str, bytes, datetime | None] | None:
        with self._lock:
            return self.tasks.pop(0) if self.tasks else None


@dataclass
class World:
    db: Any
    emulator: Any
    settings: Settings
    queue: DrainQueue
    store: FirestoreStore
    subs: SubscriptionStore
    accounts: AccountFirestoreStore
    vault: CredentialVault
    calendar_list: GoogleCalendarList
    service: SubscriptionService
    account_service: AccountService
    account_sync: AccountSync
    worker: SyncWorker
    webhook: WebhookService
    clock: list[datetime] = field(default_factory=lambda: [datetime.now(UTC)])
    answers: list[tuple[str, int]] = field(default_factory=list)  # (body, status) per task

    @property
    def control(self) -> Any:
        return self.emulator.control

    def api(self, user: str) -> Any:
        from infra.calendar_emulator.testing import calendar_service

        return calendar_service(self.emulator.base_url, user)

    def grant(self, user: str) -> str:
        """A refresh token of `user` sealed as the API does on a code exchange."""
        return self.vault.store_refresh_token(f"rt:{user}")

    def drain(self, timeout: float = 60.0) -> list[tuple[str, int]]:
        """Run queued tasks through the real worker until none is left (pushes included:
        the emulator's are flushed first, each time the queue runs dry)."""
        deadline = time.monotonic() + timeout
        answers: list[tuple[str, int]] = []
        while time.monotonic() < deadline:
            task = self.queue.take()
            if task is None:
                assert self.control.flush_notifications(timeout=10)
                task = self.queue.take()
                if task is None:
                    self.answers.extend(answers)
                    return answers
            _, body, not_before = task
            wait = (not_before - datetime.now(UTC)).total_seconds() if not_before else 0
            if wait > 0:
                time.sleep(min(wait, 2.0))
            answer = self.worker.handle(body)
            answers.append((body.decode(), answer.status))
            if answer.status >= 500:
                self.queue.tasks.append(task)  # Cloud Tasks retries it
                time.sleep(0.05)
        raise AssertionError(f"tasks still queued after {timeout}s: {self.queue.tasks[:5]}")

    def renewer(self) -> Renewer:
        return Renewer(self.settings, self.subs, self.service, clock=lambda: self.clock[0],
                       accounts=AccountRenewal(self.accounts, self.account_service,
                                               self.service))

    def list_channel(self, account_id: str) -> Any:
        """The account's one delivering calendar-list channel."""
        delivering = self.accounts.delivering_channels(account_id)
        assert len(delivering) == 1, delivering
        return delivering[0]

    def members(self, account_id: str) -> dict[str, dict[str, Any]]:
        """calendar_id -> subscription document, every subscription of the account."""
        return {data["calendar_id"]: {**data, "id": sub_id}
                for sub_id, data in self.accounts.members(account_id, None, 1000)}

    def followed(self, account_id: str) -> set[str]:
        return {cal for cal, data in self.members(account_id).items()
                if data["status"] in ("active", "paused", "error")}

    def feed(self, sub_id: str) -> list[ChangeEntry]:
        entries: list[ChangeEntry] = []
        cursor = 0
        while True:
            raw = [d.to_dict() for d in self.db.collection(f"subscriptions/{sub_id}/changes")
                   .where(filter=FieldFilter("seq", ">", cursor)).order_by("seq").limit(500)
                   .stream()]
            if not raw:
                return entries
            entries.extend(ChangeEntry(seq=int(d["seq"]), kind=d["kind"],
                                       event_id=d.get("event_id") or "",
                                       fields=d.get("fields") or {}, etag=d.get("etag"),
                                       recurring_event_id=d.get("recurring_event_id"),
                                       at=d.get("at")) for d in raw)
            cursor = int(raw[-1]["seq"])

    def kinds(self, sub_id: str) -> list[str]:
        return [e.kind for e in self.feed(sub_id)]

    def listing(self, user: str, calendar_id: str) -> dict[str, str]:
        """What events.list answers now: id -> etag of every live event."""
        api, items, token = self.api(user), {}, None
        while True:
            page = api.events().list(calendarId=calendar_id, pageToken=token,
                                     maxResults=2500).execute()
            items.update({i["id"]: i["etag"] for i in page.get("items", [])
                          if i.get("status") != "cancelled"})
            token = page.get("nextPageToken")
            if not token:
                return items

    def live(self, sub_id: str) -> dict[str, str]:
        ids = [i for batch in self.store.iter_live_ids(sub_id, 500) for i in batch]
        return {i: s["etag"] for i, s in self.store.load_snapshots(sub_id, ids).items()
                if s and not s.get("_deleted")}

    def insert(self, user: str, calendar_id: str, summary: str) -> str:
        """Through the control API: works whatever `user`'s grant says."""
        body = {"summary": summary, "start": {"dateTime": "2030-01-02T10:00:00Z"},
                "end": {"dateTime": "2030-01-02T11:00:00Z"}}
        return str(self.control.bulk_insert_events(calendar_id, [body])[0])


class _Headers(dict[str, str]):
    """Header names looked up case-insensitively, as Werkzeug's `Headers` are."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


def settings_for(emulator: Any, webhook_url: str, **extra: str) -> Settings:
    return Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": "calsync-test", "CALSYNC_REGION": "local",
        "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
        "CALSYNC_WEBHOOK_URL": webhook_url, "CALSYNC_CHANNEL_TOKEN_KEYS": f"k:{KEY}",
        "CALSYNC_CREDENTIAL_KEYS": f"c:{KEY}", "CALSYNC_OAUTH_CLIENT_ID": "calsync-test",
        "CALSYNC_OAUTH_CLIENT_SECRET": "s", "CALENDAR_API_ENDPOINT": emulator.api_endpoint,
        "CALSYNC_OAUTH_TOKEN_URI": emulator.token_uri,
        "CALSYNC_MIN_SYNC_INTERVAL_SECONDS": "0.01", "CALSYNC_RENEWAL_BACKOFF_SECONDS": "60",
        **extra})


def build_world(db: Any, emulator: Any, serve: Callable[[Any], str],
                budget: CallBudget | None = None, **extra: str) -> World:
    """`budget`: the owners' call budgets the list runs take from (none: unlimited)."""
    holder: dict[str, WebhookService] = {}

    def webhook_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        headers = _Headers({k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                            if k.startswith("HTTP_")})
        try:
            outcome = holder["webhook"].handle(parse_notification("POST", headers))
            status = outcome.status
        except BadNotification:
            status = 400
        start_response(f"{status} X", [("Content-Length", "0")])
        return [b""]

    url = serve(webhook_app) + "/"
    settings = settings_for(emulator, url, **extra)
    queue = DrainQueue()
    store, subs = FirestoreStore(db), SubscriptionStore(db)
    accounts = AccountFirestoreStore(db)
    vault = CredentialVault(db, settings.credential_keys)
    google = GoogleCalendar(GoogleCredentialsProvider(settings, vault),
                            api_endpoint=settings.calendar_api_endpoint)
    calendar_list = GoogleCalendarList(google)
    service = SubscriptionService(settings, subs, GoogleChannels(google), store, queue)
    clock = [datetime.now(UTC)]  # the renewer's and the list channels' (records due when)
    channels = AccountChannels(settings, accounts, subs, calendar_list,
                               clock=lambda: clock[0])
    account_service = AccountService(settings, accounts, service, channels, queue, vault)
    engine = SyncEngine(store, google, queue, SyncSettings(min_sync_interval=0.01),
                        channels=service)
    account_sync = AccountSync(accounts, calendar_list, account_service, service, queue,
                               AccountSyncSettings(min_sync_interval=0.01), budget=budget)
    worker = SyncWorker(lambda: engine, lambda: account_sync)
    holder["webhook"] = WebhookService(FirestoreChannelStore(db), store, queue,
                                       settings.channel_token_keys, record_interval=5.0,
                                       min_sync_interval=0.01, accounts=accounts,
                                       account_queue=queue)
    return World(db, emulator, settings, queue, store, subs, accounts, vault, calendar_list,
                 service, account_service, account_sync, worker, holder["webhook"], clock)


@pytest.fixture
def world(firestore_db: Any, calendar: Any, serve: Callable[[Any], str]) -> Iterator[World]:
    calendar.control.configure(retryInitialSeconds=0.05)
    yield build_world(firestore_db, calendar, serve)
    calendar.control.clear_notification_faults()


def later(world: World, **delta: float) -> None:
    world.clock[0] += timedelta(**delta)
