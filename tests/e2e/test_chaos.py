"""Chaos on the whole local stack: hundreds of calendar writes across several calendars
while the Calendar emulator's control API injects faults; then, after quiet, every
subscription converges (tests/faults/invariants.py) within a bounded number of
renewer runs. The tally of faults injected is printed (pytest -s) and attached to
any failure.

Faults: events.list 500/503 (a run of three is past the worker's one in-run retry,
so the worker answers 500 and Cloud Tasks retries it: the stand-in for a crashed
worker), 429 and 403 rate limits, a per-user rate limit window, 410s (tokens
invalidated, or injected), failing watches (a subscribe and the resume follow one)
and channel stops, dropped, duplicated and delayed notifications.
"""

from __future__ import annotations

import os
import random

import pytest

from infra.calendar_emulator.testing import calendar_service
from tests.e2e.conftest import E2E
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

pytestmark = pytest.mark.e2e
SEED = int(os.environ.get("CALSYNC_CHAOS_SEED", "300"))
MUTATIONS = 320
CALENDARS = 5
MAX_RENEWER_RUNS = 30
OWNERS = ("chaos-a@example.com", "chaos-b@example.com")


def worker_500(history: History) -> None:
    history.control.inject_failure("events.list", 500, "backendError", count=3)


def test_chaos_converges_and_prints_the_fault_tally(e2e: E2E) -> None:
    from functions import app

    rng = random.Random(SEED)
    base = e2e.env["CALENDAR_API_ENDPOINT"].split("/calendar/v3")[0]
    db = app.firestore_client(app.cli_settings())
    cals = []
    for n in range(CALENDARS):
        owner = OWNERS[n % len(OWNERS)]
        e2e.control.add_user(owner)
        api = calendar_service(base, owner)
        calendar_id = api.calendars().insert(body={"summary": f"chaos {n}"}).execute()["id"]
        cals.append(Cal(Watched(calendar_id, owner, api)))
    history = History(rng, e2e.control, e2e.service, cals,
                      extra_faults={"worker_500": worker_500})
    for cal in cals:
        for _ in range(4):
            history.mutate(cal)
    for cal in cals[:3]:
        history.subscribe(cal)
    renewer = RenewerLoop(e2e.env["CALSYNC_RENEWER_URL"], 1.5, history.tally).start()
    try:
        history.run(MUTATIONS, late=cals[3:], step_pause=0.06, fault_rate=0.15)
    finally:
        history.quiet()
        renewer.stop()
    report = tally_text(history.tally)
    print(f"\n[chaos seed={SEED}] {history.mutations} mutations on {len(cals)} calendars; "
          f"faults and actions: {report}", flush=True)
    assert history.mutations >= 300 and len(cals) >= 4
    missing = [k for k in history.fault_kinds() if not history.tally[f"fault_{k}"]]
    assert not missing, f"fault kinds never injected: {missing} ({report})"

    watched = [cal.watched for cal in cals]
    runs, problems = converge(lambda: invariants.problems(e2e.store, db, watched),
                              lambda: renew(e2e.env["CALSYNC_RENEWER_URL"]), MAX_RENEWER_RUNS,
                              tally=history.tally)
    print(f"[chaos seed={SEED}] renewer runs after quiet: {runs}; problems: {problems}",
          flush=True)
    if problems:
        print(log_summary(e2e.run_dir), recent_runs(e2e.run_dir, problems), sep="\n", flush=True)
        keep_logs(e2e.run_dir)
    report = tally_text(history.tally)
    assert not problems, (f"not converged after {runs} renewer runs past quiet "
                          f"(seed {SEED}):\n  " + "\n  ".join(problems)
                          + f"\nfaults injected: {report}")
