"""End-to-end helpers: the whole local stack, driven the way users and Google drive it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.calendar_emulator.control import EmulatorControl
from infra.calendar_emulator.testing import calendar_service
from infra.local import components
from infra.local.logs import json_log_lines
from infra.local.stack import Stack


@dataclass
class E2E:
    env: dict[str, str]
    control: EmulatorControl
    service: Any  # SubscriptionService, in-process like the CLI
    store: Any  # FirestoreStore

    @property
    def run_dir(self) -> Path:
        return Path(self.env["CALSYNC_RUN_DIR"])

    def calendar(self, user: str) -> Any:
        return calendar_service(self.env["CALENDAR_API_ENDPOINT"].split("/calendar/v3")[0],
                                user)

    def new_calendar(self, user: str, events: int = 0) -> tuple[Any, str]:
        api = self.calendar(user)
        calendar_id = api.calendars().insert(body={"summary": "e2e"}).execute()["id"]
        for n in range(events):
            api.events().insert(calendarId=calendar_id, body=event_body(f"seed {n}", n)).execute()
        return api, calendar_id

    def subscribe(self, calendar_id: str, user: str, credentials_ref: str = "bearer") -> Any:
        """Subscribe as the CLI does; the Subscription."""
        return self.service.subscribe(calendar_id, user, credentials_ref).subscription

    def active_channel(self, sub_id: str, timeout: float = 30) -> Any:
        """The subscription's active channel, once its first run has opened it."""
        def found() -> Any:
            live = [c for c in self.service._subs.delivering_channels(sub_id)
                    if c.state == "active"]
            return live[0] if len(live) == 1 else None

        return wait_until(found, timeout, f"{sub_id} to have one active channel")

    def feed(self, sub_id: str) -> list[Any]:
        entries, cursor = [], 0
        while True:
            page = self.store.list_changes(sub_id, cursor, 500)
            entries.extend(page.entries)
            if not page.entries:
                return entries
            cursor = page.next_cursor

    def quiet(self, sub_id: str) -> bool:
        sub = self.store.get_subscription(sub_id)
        state = self.store.get_writer_state(sub_id)
        return bool(sub and sub.requested_gen <= int(state.get("synced_gen") or 0)
                    and not _held(state))

    def wait_quiet(self, sub_id: str, timeout: float = 60) -> None:
        self.control.flush_notifications(timeout=10)
        wait_until(lambda: self.quiet(sub_id), timeout, f"{sub_id} to go quiet")

    def live_snapshots(self, sub_id: str) -> dict[str, str]:
        ids = [i for batch in self.store.iter_live_ids(sub_id, 500) for i in batch]
        snaps = self.store.load_snapshots(sub_id, ids)
        return {i: s["etag"] for i, s in snaps.items() if s and not s.get("_deleted")}

    def listed(self, api: Any, calendar_id: str) -> dict[str, str]:
        items, token = {}, None
        while True:
            page = api.events().list(calendarId=calendar_id, pageToken=token,
                                     maxResults=2500).execute()
            for item in page.get("items", []):
                if item.get("status") != "cancelled":
                    items[item["id"]] = item["etag"]
            token = page.get("nextPageToken")
            if not token:
                return items

    def worker_runs(self, sub_id: str, outcome: str | None = "synced") -> list[dict[str, Any]]:
        return [line for line in log_lines(self.run_dir / "function-sync_worker.log", "sync run")
                if line.get("subscription") == sub_id
                and (outcome is None or line.get("outcome") == outcome)]

    def renew(self) -> dict[str, Any]:
        request = urllib.request.Request(self.env["CALSYNC_RENEWER_URL"], method="POST",
                                         data=b"{}", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return dict(json.loads(response.read()))

    def notify(self, headers: dict[str, str]) -> int:
        request = urllib.request.Request(self.env["CALSYNC_WEBHOOK_URL"], method="POST",
                                         data=b"", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)


def _held(state: dict[str, Any]) -> bool:
    from datetime import UTC, datetime

    until = state.get("lease_until")
    return until is not None and until > datetime.now(UTC)


def event_body(summary: str, n: int = 0) -> dict[str, Any]:
    day = 1 + n % 28
    return {"summary": summary,
            "start": {"dateTime": f"2026-12-{day:02d}T09:00:00Z"},
            "end": {"dateTime": f"2026-12-{day:02d}T10:00:00Z"}}


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


log_lines = json_log_lines


@pytest.fixture
def e2e(local_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[E2E]:
    from functions import app

    env = local_stack.env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    components.reset_firestore(env["FIRESTORE_EMULATOR_HOST"], env["GOOGLE_CLOUD_PROJECT"])
    control = EmulatorControl(env["CALENDAR_EMULATOR_CONTROL"].rsplit("/control", 1)[0])
    control.reset()
    app.reset()
    settings = app.cli_settings()
    try:
        yield E2E(env, control, app.subscription_service(settings), app.store(settings))
    finally:
        app.reset()
