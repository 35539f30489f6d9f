"""Per-project and per-user quotas, sliding windows and daily counters (calendar-api.md 5, 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.errors import HttpError

from infra.calendar_emulator.control import EmulatorControl
from infra.calendar_emulator.testing import calendar_service

from .conftest import USER, Receiver

ROOT = Path(__file__).resolve().parents[3]
USER_LIMIT_BODY = {
    "error": {
        "errors": [
            {
                "domain": "usageLimits",
                "reason": "userRateLimitExceeded",
                "message": "User Rate Limit Exceeded",
            }
        ],
        "code": 403,
        "message": "User Rate Limit Exceeded",
    }
}


def project_limit_body(status: int) -> dict[str, Any]:
    return {
        "error": {
            "errors": [
                {
                    "domain": "usageLimits",
                    "reason": "rateLimitExceeded",
                    "message": "Rate Limit Exceeded",
                }
            ],
            "code": status,
            "message": "Rate Limit Exceeded",
        }
    }


def refused(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as caught:
        call.execute()
    return caught.value.status_code, json.loads(caught.value.content)


def get(service: Any) -> Any:
    return service.calendars().get(calendarId="primary")


def test_quotas_are_off_by_default(emu: Any, service: Any) -> None:
    settings = emu.control.quotas()
    assert settings["projectPerMinute"] is None and settings["userPerMinute"] is None
    for _ in range(50):
        get(service).execute()


def test_exactly_the_default_user_limit_passes_then_403_user_rate_limit(
    emu: Any, service: Any
) -> None:
    emu.control.freeze_clock()
    emu.control.set_quotas(project_per_minute=10_000, user_per_minute=600)
    for _ in range(600):
        get(service).execute()
    assert refused(get(service)) == (403, USER_LIMIT_BODY)
    # Another user of the same project is not held back.
    get(calendar_service(emu.base_url, "other@example.com")).execute()


@pytest.mark.parametrize("status", [403, 429])
def test_exactly_the_default_project_limit_passes_then_rate_limit_exceeded(
    emu: Any, service: Any, status: int
) -> None:
    emu.control.freeze_clock()
    emu.control.set_quotas(project_per_minute=10_000, user_per_minute=600, project_status=status)
    # 9,990 requests of other users of the project (as a busy deployment makes them) ...
    for index in range(9_990 // 555):
        emu.control.charge_quota(555, user=f"user{index}@example.com")
    users = [calendar_service(emu.base_url, f"u{n}@example.com") for n in range(10)]
    # ... then the last ten of the minute pass, and the next one, from a fresh user, does not.
    for client in users:
        get(client).execute()
    fresh = calendar_service(emu.base_url, "fresh@example.com")
    assert refused(get(fresh)) == (status, project_limit_body(status))
    # Another project has its own quota.
    other = calendar_service(
        emu.base_url, "x", credentials=Credentials(token=USER, quota_project_id="other-project")
    )
    get(other).execute()


def test_a_frozen_clock_moves_only_when_advanced(emu: Any) -> None:
    frozen = emu.control.freeze_clock()
    time.sleep(0.01)
    assert emu.control.now() == frozen
    emu.control.advance_clock(1.5)
    moved = emu.control.now()
    assert moved > frozen and emu.control.now() == moved
    emu.control.freeze_clock(False)
    time.sleep(0.01)
    assert emu.control.now() > moved
    emu.control.freeze_clock()
    emu.control.reset()
    first = emu.control.now()
    time.sleep(0.01)
    assert emu.control.now() > first  # reset runs the clock again


def test_the_window_slides(emu: Any, service: Any) -> None:
    emu.control.freeze_clock()  # only advance_clock moves time: the window edges are exact
    emu.control.set_quotas(user_per_minute=3)
    get(service).execute()
    get(service).execute()
    emu.control.advance_clock(30)
    get(service).execute()
    assert refused(get(service))[0] == 403
    emu.control.advance_clock(29.999)
    assert refused(get(service))[0] == 403  # the first two are 59.999 s old: in the window
    emu.control.advance_clock(0.001)
    get(service).execute()  # 60 s old: they left the window; the one from second 30 is in it
    get(service).execute()
    assert refused(get(service))[0] == 403
    emu.control.advance_clock(60)
    get(service).execute()


def test_refused_requests_do_not_use_up_the_window(emu: Any, service: Any) -> None:
    emu.control.freeze_clock()
    emu.control.set_quotas(user_per_minute=2)
    get(service).execute()
    get(service).execute()
    for _ in range(5):
        assert refused(get(service))[0] == 403
    emu.control.advance_clock(61)
    get(service).execute()
    get(service).execute()


def test_watch_and_stop_count_and_every_method_is_limited(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    emu.control.set_quotas(user_per_minute=3)
    channel = (
        service.events()
        .watch(
            calendarId="primary",
            body={"id": str(uuid.uuid4()), "type": "web_hook", "address": receiver.url},
        )
        .execute()
    )
    service.channels().stop(
        body={"id": channel["id"], "resourceId": channel["resourceId"]}
    ).execute()
    service.calendarList().list().execute()
    for call in (
        service.events().list(calendarId="primary"),
        service.calendarList().watch(
            body={"id": "cl", "type": "web_hook", "address": receiver.url}
        ),
        service.channels().stop(body={"id": "cl", "resourceId": "r"}),
    ):
        assert refused(call) == (403, USER_LIMIT_BODY)
    usage = emu.control.quota_usage()
    (today,) = usage["users"][USER]
    assert usage["users"][USER][today] == {"requests": 3, "refused": 3}


def test_daily_counters_per_project_and_user(emu: Any, service: Any) -> None:
    other = calendar_service(emu.base_url, "bob@example.com")
    for _ in range(4):
        get(service).execute()
    get(other).execute()
    emu.control.charge_quota(1000, user="batch@example.com")
    usage = emu.control.quota_usage()
    assert usage["timeZone"] == "America/Los_Angeles"
    today = usage["day"]
    assert usage["projects"] == {"default": {today: {"requests": 1005, "refused": 0}}}
    assert usage["users"][USER] == {today: {"requests": 4, "refused": 0}}
    assert usage["users"]["bob@example.com"] == {today: {"requests": 1, "refused": 0}}
    # The next day counts from zero; the previous day keeps its figure.
    emu.control.advance_clock(86_400)
    get(service).execute()
    usage = emu.control.quota_usage()
    tomorrow = usage["day"]
    assert tomorrow != today
    assert usage["projects"]["default"] == {
        today: {"requests": 1005, "refused": 0},
        tomorrow: {"requests": 1, "refused": 0},
    }
    emu.control.reset()
    assert emu.control.quota_usage()["projects"] == {}


def test_quota_settings_are_validated(emu: Any) -> None:
    for bad in ({"project_per_minute": 0}, {"project_status": 500}, {"window_seconds": -1.0}):
        with pytest.raises(Exception) as caught:
            emu.control.set_quotas(**bad)
        assert getattr(caught.value, "status", None) == 400


@pytest.fixture
def emulator_process() -> Iterator[str]:
    """``python -m infra.calendar_emulator`` with quota flags, in its own process group."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.calendar_emulator",
            "--port",
            "0",
            "--project-quota-per-minute",
            "4",
            "--user-quota-per-minute",
            "2",
            "--project-quota-status",
            "429",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def test_command_line_flags_set_the_quotas_and_survive_reset(emulator_process: str) -> None:
    control = EmulatorControl(emulator_process)
    control.reset()
    assert control.quotas()["projectPerMinute"] == 4
    alice, bob = (calendar_service(emulator_process, name) for name in ("a@x.com", "b@x.com"))
    get(alice).execute()
    get(alice).execute()
    assert refused(get(alice)) == (403, USER_LIMIT_BODY)
    get(bob).execute()
    get(bob).execute()
    assert refused(get(calendar_service(emulator_process, "c@x.com"))) == (
        429,
        project_limit_body(429),
    )
