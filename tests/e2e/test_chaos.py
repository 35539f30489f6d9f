"""Chaos on a whole local stack: hundreds of calendar writes across several calendars
while the Calendar emulator's control API injects faults; then, after quiet, every
subscription converges (tests/faults/invariants.py) within a bounded number of
renewer runs, on two consecutive clean samples, and a probe change per calendar
arrives through its notification and task alone. The tally of faults injected, and
the evidence that each acted, is printed (pytest -s) and attached to any failure.

The stack is the test's own (tests/faults/world.py), with the safety net and the
repair sweeps far slower than the test, so convergence must come through
notifications, tasks and renewals: the faults here crash nothing (a task that fails
is retried by the queue), so nothing needs the sweeps.

Faults: events.list 500/503 (a run of three is past the worker's one in-run retry,
so the worker answers 500 and Cloud Tasks retries it: the stand-in for a crashed
worker), 429 and 403 rate limits, a user's calls refused for a moment, 410s (tokens
invalidated, or injected), failing watches (a subscribe and the resume follow one)
and channel stops, dropped, duplicated and delayed notifications.

An account (tests/faults/account_chaos.py) follows its owner's calendars in the same
stack: calendars are shared with it and unshared during the history, each beside a
fault on the calendar-list path (its channel's pushes dropped, duplicated, delayed;
calendarList.list 503, 429, 410; calendarList.watch refused), and it must end up
following exactly what its policy picks, each calendar converged like the others.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.calendar_emulator.control import EmulatorControl
from infra.calendar_emulator.testing import calendar_service
from infra.local.logs import json_log_lines
from tests.faults import invariants
from tests.faults.account_chaos import AccountChaos
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
from tests.faults.world import BACKSTOPS_OFF, SMALL_CHANNEL_INTERVALS, World, hooked_stack

pytestmark = pytest.mark.e2e
PROJECT = "calsync-chaos"
SEED = int(os.environ.get("CALSYNC_CHAOS_SEED", "300"))
# Run against a broken copy of one code path (tests/faults/hooks.py, MUTATIONS) to see
# it fail; tests/integration/liveness/test_mutations.py does so for each, quickly.
MUTATION = os.environ.get("CALSYNC_CHAOS_MUTATION", "")
MUTATIONS = 320
CALENDARS = 5
MAX_RENEWER_RUNS = 30
PROBE_RUNS = 6
SETTLE_SECONDS = 20  # at quiet, at most, for late Calendar failures to be answered
OWNERS = ("chaos-a@example.com", "chaos-b@example.com")
SETTINGS = {
    **BACKSTOPS_OFF,
    **SMALL_CHANNEL_INTERVALS,
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with hooked_stack(tmp_path, PROJECT, SETTINGS) as world:
        yield world


def worker_500(history: History) -> None:
    history.inject("worker_500", "events.list", 500, "backendError", count=3)


def test_chaos_converges_and_prints_the_fault_tally(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import app

    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    world.mutate(*([MUTATION] if MUTATION else []))
    app.reset()
    try:
        _chaos(world, app)
    finally:
        app.reset()


def _chaos(world: World, app: Any) -> None:
    env = world.env
    settings = app.cli_settings()
    service, store, db = (app.subscription_service(settings), app.store(settings),
                          app.firestore_client(settings))
    base = env["CALENDAR_API_ENDPOINT"].split("/calendar/v3")[0]
    control = EmulatorControl(base)
    rng = random.Random(SEED)
    cals = []
    for n in range(CALENDARS):
        owner = OWNERS[n % len(OWNERS)]
        control.add_user(owner)
        api = calendar_service(base, owner)
        calendar_id = api.calendars().insert(body={"summary": f"chaos {n}"}).execute()["id"]
        cals.append(Cal(Watched(calendar_id, owner, api)))
    account = AccountChaos(control, db, base, world.run_dir)
    accounts = app.account_service(settings)
    account.create(lambda owner, policy: accounts.connect(owner, "bearer", policy).account.id)
    history = History(rng, control, service, cals + account.cals,
                      extra_faults={"worker_500": worker_500})
    account.schedule(history)
    for cal in cals:
        for _ in range(4):
            history.mutate(cal)
    for cal in cals[:3]:
        history.subscribe(cal)
    renewer = RenewerLoop(env["CALSYNC_RENEWER_URL"], 1.5, history.tally).start()
    try:
        history.run(MUTATIONS, late=cals[3:], step_pause=0.06, fault_rate=0.15)
    finally:
        history.quiet(settle_seconds=SETTLE_SECONDS)
        renewer.stop()
    history.prove_rate_limits(json_log_lines(world.run_dir / "function-sync_worker.log",
                                             "sync run"))
    report = tally_text(history.tally)
    print(f"\n[chaos seed={SEED}] {history.mutations} mutations on {len(history.cals)} calendars; "
          f"faults and actions: {report}", flush=True)
    print(f"[chaos seed={SEED}] evidence: {tally_text(history.taken)}", flush=True)
    assert history.mutations >= 300 and len(cals) >= 4
    missing = [k for k in history.all_kinds() if not history.tally[f"fault_{k}"]]

    watched = [cal.watched for cal in cals]

    def check(last: dict[str, Any]) -> list[str]:
        return (invariants.problems(store, db, watched + account.watched(), control)
                + account.problems()
                + invariants.quiet_problems(world.queued_tasks(), env["CALSYNC_RENEWER_URL"],
                                            last))

    runs, problems = converge(check, lambda: renew(env["CALSYNC_RENEWER_URL"]),
                              MAX_RENEWER_RUNS, tally=history.tally)
    print(f"[chaos seed={SEED}] renewer runs after quiet: {runs}; problems: {problems}",
          flush=True)
    phase = f"not converged after {runs} renewer runs past quiet"
    if not problems:
        for cal in history.cals:  # the probe: healthy now, each change through its notification
            history.mutate(cal)
        control.flush_notifications(timeout=10)
        phase = "the probe (one change per calendar once healthy) did not arrive"
        probe_runs, problems = converge(check, lambda: renew(env["CALSYNC_RENEWER_URL"]),
                                        PROBE_RUNS, tally=history.tally)
        print(f"[chaos seed={SEED}] probe converged after {probe_runs} renewer runs; "
              f"problems: {problems}", flush=True)
    account.prove(history)  # its relisting may come after quiet (a rate limit's wait)
    unproven = history.unproven()  # asserted after convergence (reported with it)
    if problems:
        print(log_summary(world.run_dir), recent_runs(world.run_dir, problems), sep="\n",
              flush=True)
        keep_logs(world.run_dir)
    report = tally_text(history.tally)
    assert not problems, (f"{phase} (seed {SEED}):\n  " + "\n  ".join(problems)
                          + f"\nfaults injected: {report}"
                          + (f"\nalso unproven faults: {unproven}" if unproven else ""))
    assert not missing, f"fault kinds never injected: {missing} ({report})"
    assert not unproven, (f"faults injected without evidence that they acted: {unproven} "
                          f"(evidence: {tally_text(history.taken)}; {report})")
