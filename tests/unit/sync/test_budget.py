"""The call budgets' pure rules (functions/sync/budget.py, functions/config.py): the
owner's bucket never lets a minute take more than 1.1 x its budget, deferred runs
are given slots a take's refill apart, and settings that would break the budgets are
refused. The adapters and the deferral are tested on the emulators
(tests/integration/sync/test_call_budget.py), the budgets in the simulation
(tests/unit/sim/test_budgets.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.config import RENEWER, ConfigError, Settings, sync_dispatches_per_second
from functions.sync.budget import BURST_SHARE, UserBucket

T0 = datetime(2026, 12, 4, tzinfo=UTC)
KEY = base64.b64encode(b"k" * 32).decode()
BASE = {"GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "r", "CALSYNC_TASKS_QUEUE": "q",
        "CALSYNC_WORKER_URL": "https://worker.example/",
        "CALSYNC_WEBHOOK_URL": "https://hook.example/", "CALSYNC_CHANNEL_TOKEN_KEYS": f"k1:{KEY}"}


def test_a_greedy_owner_never_takes_more_than_a_tenth_over_the_budget_in_a_minute() -> None:
    bucket = UserBucket(per_minute=480, shards=16)
    shares: list[dict[str, Any] | None] = [None] * 16
    taken: list[float] = []
    # Every share asked every 10 ms for 5 minutes, a take whenever it holds one.
    for step in range(30000):
        now = T0 + timedelta(milliseconds=10 * step)
        for share in range(16):
            fields, _ = bucket.take(shares[share], 1, now, book=False)
            if fields is not None:
                shares[share] = fields
                taken.append(step / 100)
    worst = max(sum(1 for t in taken if start <= t < start + 60)
                for start in [x / 10 for x in range(0, 2400, 5)])
    assert worst <= 480 * (1 + 1 / BURST_SHARE) < 600


def test_deferred_runs_get_slots_a_takes_refill_apart_and_are_served_at_them() -> None:
    bucket = UserBucket(per_minute=12, shards=1)  # 0.2 calls a second, holds 1.2
    stored, answer = bucket.take(None, 1, T0)
    assert answer is None
    slots = []
    for _ in range(3):
        stored, slot = bucket.take(stored, 1, T0)
        assert slot is not None
        slots.append(slot)
    assert slots == [T0 + timedelta(seconds=s) for s in (4, 9, 14)]
    for slot in slots:
        # A run that did not wait is behind them; the one back for its slot is served.
        assert bucket.take(stored, 1, slot)[1] is not None
        stored, answer = bucket.take(stored, 1, slot, booked=slot)
        assert answer is None


def test_the_queue_rate_is_the_budget_less_renewals_in_tasks() -> None:
    # A minute: 60 s of the rate, plus one burst (500 tasks at most), plus renewals.
    assert sync_dispatches_per_second(9000, 1000, 1) == 108  # 6,480 + 500 + 2,000 calls
    assert sync_dispatches_per_second(9000, 1000, 2) == 50  # (6,000 + 1,000) + 2,000
    assert sync_dispatches_per_second(100000, 0, 1) == 500  # Cloud Tasks' cap


@pytest.mark.parametrize(("env", "reason"), [
    ({"CALSYNC_PROJECT_CALLS_PER_MINUTE": "12000"}, "must stay below Google's quota"),
    ({"CALSYNC_USER_CALLS_PER_MINUTE": "560"}, "must be at most 545"),
    ({"CALSYNC_PROJECT_CALLS_PER_MINUTE": "2000", "CALSYNC_RENEWALS_PER_MINUTE": "1000"},
     "leaves less than one sync task a second"),
])
def test_settings_that_break_the_budgets_are_refused(env: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        Settings.from_env({**BASE, **env}, function=RENEWER)


def test_the_defaults_hold() -> None:
    settings = Settings.from_env(BASE, function=RENEWER)
    assert (settings.project_calls_per_minute, settings.user_calls_per_minute,
            settings.calls_per_task, settings.user_budget_shards) == (9000, 480, 1, 16)
    assert settings.sync_dispatches_per_second == 108
