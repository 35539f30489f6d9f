"""Liveness through the real task path (DESIGN.md, "Liveness (nothing stalls)").

A whole local stack of its own, on small intervals: Calendar writes through the
emulator's API push real notifications to the webhook; subscribe, pause and resume
run in-process as the CLI does; the Cloud Tasks emulator dispatches every sync to
the worker; the renewer is POSTed on wall time. Nothing forces a sync by hand.

Faults, from one seeded schedule: events.list 500/503/429/403 rate limits and 410s,
a per-user rate limit, failing watches (on subscribe, resume and renewal) and
stops, dropped, duplicated and delayed notifications, the worker killed mid-flight
and restarted, and enqueues refused by a TCP proxy in front of the Tasks emulator.
After the faults are lifted, every subscription must converge within a bounded
number of renewer runs (see tests/faults/invariants.py for what "converged" is).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from infra.calendar_emulator.control import EmulatorControl
from infra.calendar_emulator.testing import calendar_service
from infra.local import components
from infra.local.processes import free_port, port_in_use
from infra.local.stack import Stack, StackConfig
from tests.faults import invariants
from tests.faults.history import Cal, History
from tests.faults.invariants import Watched
from tests.faults.observe import (
    RenewerLoop,
    converge,
    keep_logs,
    log_summary,
    recent_runs,
    renew,
    tally_text,
)
from tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.slow
PROJECT = "calsync-liveness"
SEED = int(os.environ.get("CALSYNC_LIVENESS_SEED", "1010"))
MUTATIONS = 120
MAX_RENEWER_RUNS = 30
OWNERS = ("liv-a@example.com", "liv-b@example.com", "liv-c@example.com")

# Small values of every interval the design makes a setting (see the report for the
# ones that are still constants: the pending-channel grace and the first renewal backoff).
SMALL_INTERVALS = {
    "CALSYNC_SWEEP_AFTER_SECONDS": "2",
    "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": "3",
    "CALSYNC_MIN_SYNC_INTERVAL_SECONDS": "0.5",
    "CALSYNC_CHANNEL_TTL_SECONDS": "20",
    "CALSYNC_RENEWAL_WINDOW_SECONDS": "12",
    "CALSYNC_LEASE_SECONDS": "5",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Stack, TcpProxy]]:
    tasks_port = free_port()
    with TcpProxy(tasks_port) as proxy:
        env = {**SMALL_INTERVALS, "CLOUD_TASKS_EMULATOR_HOST": proxy.address}
        config = StackConfig(run_dir=tmp_path / "stack", project=PROJECT, tasks_port=tasks_port,
                             extra_function_env=env)
        with Stack(config) as stack:
            yield stack, proxy


class WorkerKiller:
    """SIGKILLs the worker's process group and starts a new worker on the same port."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.thread: threading.Thread | None = None
        self.errors: list[str] = []

    def __call__(self, history: History) -> None:
        if self.thread is not None and self.thread.is_alive():
            history.tally["worker_kill_skipped_restarting"] += 1
            return
        self.thread = threading.Thread(target=self._restart, name="worker-restart", daemon=True)
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=120)

    def _restart(self) -> None:
        stack = self.stack
        index, old = next((i, p) for i, p in enumerate(stack.processes)
                          if p.name == "function sync_worker")
        if old.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(old.pid, signal.SIGKILL)
        old.stop()
        port = int(urlparse(stack.env["CALSYNC_WORKER_URL"]).port or 0)
        deadline = time.monotonic() + 10
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            stack.processes[index] = components.start_function(
                "sync_worker", port, stack.config.run_dir, stack.env,
                stack.config.functions_source, 90, on_start=stack._record)
        except Exception as err:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{type(err).__name__}: {err}")


def fail_renewal_watches(renewer: RenewerLoop) -> Any:
    """Right before the next renewer run (which has renewals due: short TTL), watches fail."""
    def fault(history: History) -> None:
        status = history.rng.choice([500, 503, 429])
        reason = "rateLimitExceeded" if status == 429 else "backendError"
        renewer.before_next.append(lambda: history.control.inject_failure(
            "events.watch", status, reason, count=2))

    return fault


def refuse_enqueues(proxy: TcpProxy) -> Any:
    def fault(history: History) -> None:
        proxy.refuse()
        history.later(history.rng.uniform(0.5, 2.0), "proxy", proxy.accept)

    return fault


def test_every_subscription_converges_after_random_faults(
        world: tuple[Stack, TcpProxy], monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import app

    stack, proxy = world
    env = stack.env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app.reset()
    try:
        _story(stack, proxy, app)
    finally:
        app.reset()


def _story(stack: Stack, proxy: TcpProxy, app: Any) -> None:
    env = stack.env
    settings = app.cli_settings()
    service, store, db = (app.subscription_service(settings), app.store(settings),
                          app.firestore_client(settings))
    base = env["CALENDAR_API_ENDPOINT"].split("/calendar/v3")[0]
    control = EmulatorControl(base)
    rng = random.Random(SEED)

    cals = []
    for n in range(5):
        owner = OWNERS[n % len(OWNERS)]
        control.add_user(owner)
        api = calendar_service(base, owner)
        calendar_id = api.calendars().insert(body={"summary": f"liveness {n}"}).execute()["id"]
        cals.append(Cal(Watched(calendar_id, owner, api)))
    killer = WorkerKiller(stack)
    renewer = RenewerLoop(env["CALSYNC_RENEWER_URL"], 1.5, Counter())
    extra = {"worker_kill": killer, "enqueue_refused": refuse_enqueues(proxy),
             "renewal_watch_fail": fail_renewal_watches(renewer)}
    history = History(rng, control, service, cals, extra_faults=extra)
    renewer.tally = history.tally
    for cal in cals:
        for _ in range(3):
            history.mutate(cal)
    for cal in cals[:3]:
        history.subscribe(cal)
    renewer.start()
    try:
        history.run(MUTATIONS, late=cals[3:], step_pause=0.15)
    finally:
        killer.join()
        proxy.accept()
        history.quiet()
        renewer.stop()
    report = tally_text(history.tally)
    print(f"\n[liveness seed={SEED}] faults and actions: {report}", flush=True)
    assert not killer.errors, f"worker restart failed: {killer.errors}"
    missing = [k for k in history.fault_kinds() if not history.tally[f"fault_{k}"]]
    assert not missing, f"fault kinds never injected: {missing} ({report})"

    watched = [cal.watched for cal in cals]
    runs, problems = converge(lambda: invariants.problems(store, db, watched),
                              lambda: renew(env["CALSYNC_RENEWER_URL"]), MAX_RENEWER_RUNS,
                              tally=history.tally)
    print(f"[liveness seed={SEED}] renewer runs after quiet: {runs}; problems: {problems}",
          flush=True)
    if problems:
        run_dir = stack.config.run_dir
        print(log_summary(run_dir), recent_runs(run_dir, problems), sep="\n", flush=True)
        keep_logs(run_dir)
    report = tally_text(history.tally)
    assert not problems, (f"not converged after {runs} renewer runs past quiet "
                          f"(seed {SEED}):\n  " + "\n  ".join(problems) + f"\ntally: {report}")
