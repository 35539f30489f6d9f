"""Liveness through the real task path (DESIGN.md, "Liveness (nothing stalls)").

A whole local stack of its own, on small intervals, its functions running with the
test hooks (tests/faults/hooks.py): Calendar writes through the emulator's API push
real notifications to the webhook; subscribe, pause and resume run in-process as the
CLI does; the Cloud Tasks emulator dispatches every sync to the worker; the renewer
is POSTed on wall time. Nothing forces a sync by hand.

The safety net runs far slower than the test, so convergence must come through
notifications, tasks and renewals. The sweep of stranded requests and the outbox
sweep are the designed repair of crashes, which this test injects, so they run on a
short age (`REPAIR_AGE`); the probe at the end shows that a change made once
everything is healthy arrives in fewer renewer runs than that age allows them to
act: through its notification and task alone.

Faults, from one seeded schedule: events.list 500/503/429/403 rate limits and 410s,
a user's calls refused for a moment, failing watches (on subscribe, resume and
renewal) and stops, dropped, duplicated and delayed notifications, the worker killed
mid-flight and restarted, enqueues refused by a TCP proxy in front of the Tasks
emulator, Firestore errors (before a call, or after a write went through) in each
function, the renewer killed mid-renewal (new channel open, old one not retired),
concurrent renewer runs, a duplicate delivery of a sync task beside the queue, a
pause while a subscription's first watch is in flight, and clock skew between the
processes (each function reads its wall clock shifted by its own offset: see
`CLOCK_OFFSETS`). Each fault is shown to have taken effect where it happened.
After the faults are lifted, every subscription must converge within a bounded
number of renewer runs, on two consecutive clean samples (tests/faults/invariants.py).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from infra.calendar_emulator.control import EmulatorControl
from infra.calendar_emulator.testing import calendar_service
from infra.local.logs import json_log_lines
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
from tests.faults.world import FAR, SMALL_CHANNEL_INTERVALS, World, hooked_stack

pytestmark = pytest.mark.slow
PROJECT = "calsync-liveness"
SEED = int(os.environ.get("CALSYNC_LIVENESS_SEED", "1010"))
# Run this test against a broken copy of one code path (tests/faults/hooks.py,
# MUTATIONS) to see it fail; the mutation checks (test_mutations.py) do this on a
# small scenario for each broken copy.
MUTATION = os.environ.get("CALSYNC_LIVENESS_MUTATION", "")
MUTATIONS = 120
MAX_RENEWER_RUNS = 40
REPAIR_AGE = 15  # the sweep's and the outbox sweep's age, seconds
PROBE_RUNS = 6  # renewer runs (~1.3 s apart) for the probe: well under REPAIR_AGE
SETTLE_SECONDS = 20  # at quiet, at most, for late Calendar failures to be answered
OWNERS = ("liv-a@example.com", "liv-b@example.com", "liv-c@example.com")

# Small values of every interval; the safety net far beyond the test.
SMALL_INTERVALS = {
    "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": FAR,
    "CALSYNC_SWEEP_AFTER_SECONDS": str(REPAIR_AGE),
    "CALSYNC_OUTBOX_SWEEP_SECONDS": str(REPAIR_AGE),
    **SMALL_CHANNEL_INTERVALS,
    "CALSYNC_PUBLISH_TIMEOUT_SECONDS": "3",
}
# Each function's clock is off by its own offset (seconds): a fraction of the lease,
# the renewal window and the claim, as a host clock off by a fraction of production's
# intervals would be. Shifting `now` inside one process is faithful to a host whose
# clock is off: every time that process writes or compares is shifted alike, while
# Firestore's and the other processes' clocks stay where they are.
CLOCK_OFFSETS = {"sync_worker": 2.5, "renew_channels": -2.0, "webhook": 1.5}
TARGETS = ("webhook", "sync_worker", "renew_channels")
WATCH_HOLD = 4.0  # seconds a first watch is held after Google answered (a pause lands)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with hooked_stack(tmp_path, PROJECT, SMALL_INTERVALS, CLOCK_OFFSETS) as world:
        yield world


class WorkerKiller:
    """SIGKILLs the worker's process group and starts a new worker on the same port."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.thread: threading.Thread | None = None
        self.errors: list[str] = []
        self.kills = 0

    def __call__(self, history: History) -> None:
        if self.thread is not None and self.thread.is_alive():
            history.tally["worker_kill_skipped_restarting"] += 1
            return
        if time.monotonic() < history.holding_until:
            history.tally["worker_kill_skipped_watch_held"] += 1
            return
        self.thread = threading.Thread(target=self._restart, args=(history,),
                                       name="worker-restart", daemon=True)
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=120)

    def _restart(self, history: History) -> None:
        try:
            self.world.restart("sync_worker")
            history.took_effect("worker_kill")  # the process group was killed and replaced
        except Exception as err:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{type(err).__name__}: {err}")


def fail_renewal_watches(renewer: RenewerLoop) -> Any:
    """Right before the next renewer run (which has renewals due: short TTL), watches fail."""
    def fault(history: History) -> None:
        status = history.rng.choice([500, 503, 429])
        reason = "rateLimitExceeded" if status == 429 else "backendError"
        renewer.before_next.append(lambda: history.inject(
            "renewal_watch_fail", "events.watch", status, reason, count=2))

    return fault


def refuse_enqueues(world: World) -> Any:
    def fault(history: History) -> None:
        proxy = world.proxy
        before = proxy.refused_connections
        proxy.refuse()

        def accept() -> None:
            proxy.accept()
            history.took_effect("enqueue_refused", proxy.refused_connections - before)

        # Held until an enqueue met the refusal (a window with none showed nothing),
        # at most 8 s: the history goes on writing meanwhile, so pushes come.
        history.later(history.rng.uniform(0.5, 2.0), "proxy", accept,
                      until=lambda: proxy.refused_connections > before, bound=8.0)

    return fault


def firestore_errors(world: World) -> Any:
    """The next 1-3 Firestore calls of each function fail: before the call, or (for a
    write) after it went through, so the caller sees an error for a write that
    happened. Counted by the hook where each error was raised."""
    def fault(history: History) -> None:
        for target in TARGETS:
            after = history.rng.random() < 0.5
            budget = world.budget("firestore_error", target, history.rng.randint(1, 3),
                                  after=after, **({"write": True} if after else {}))
            history.tally[f"firestore_error_{target}_{'after' if after else 'before'}"] += 1
            history.budgets.append(budget)

    return fault


def renewer_crash(world: World) -> Any:
    """The renewer's process dies right after its next renewal's watch: the new channel
    open and active, the old one still active and claimed (gunicorn starts a new
    process, as Cloud Run starts a new instance)."""
    def fault(history: History) -> None:
        history.budgets.append(world.budget("renewer_crash", "renew_channels", 1))

    return fault


def concurrent_renewers(renewer: RenewerLoop, world: World, bursts: list[float]) -> Any:
    """The next few scheduler ticks each start three renewer runs side by side (two
    scheduler jobs, a continuation, an operator's `renew`); `bursts` gets the wall
    time of each."""
    def fault(history: History) -> None:
        def burst() -> None:
            bursts.append(time.time())
            runs = [threading.Thread(target=renew, args=(world.env["CALSYNC_RENEWER_URL"],),
                                     daemon=True) for _ in range(2)]
            for run in runs:
                run.start()
            history.tally["renewer_concurrent_runs"] += len(runs)

        renewer.before_next.extend([burst] * 4)

    return fault


def duplicate_dispatch(world: World) -> Any:
    """Cloud Tasks delivers at least once and runs tasks side by side (the emulator runs
    one at a time): a sync task's request delivered to the worker beside the queue."""
    def fault(history: History) -> None:
        subscribed = [c.sub_id for c in history.cals if c.sub_id]
        if not subscribed:
            return
        sub_id = history.rng.choice(subscribed)

        def deliver() -> None:
            # Retried on a failing answer (a Firestore error, the worker restarting),
            # as Cloud Tasks retries its delivery.
            for _ in range(5):
                answer = world.dispatch(sub_id)
                history.tally[f"duplicate_answered_{answer.replace(' ', '_')[:24]}"] += 1
                if not answer.startswith(("http", "unreachable")):
                    history.took_effect("duplicate_dispatch")  # the worker ran it
                    return
                time.sleep(1.0)

        threading.Thread(target=deliver, daemon=True).start()

    return fault


def pause_during_watch(world: World) -> Any:
    """Subscribe `cal` with its first watch held after Google answered, and pause it
    while the watch is in flight (once the webhook learnt the channel's resource id,
    so the pause stops it at Google too)."""
    def pause(history: History, cal: Cal) -> bool:
        # Timed faults lifted first (each within ~8 s): a Cloud Tasks proxy still
        # refusing would keep the first run, and so its watch, from starting.
        deadline = time.monotonic() + 10
        while history.pending_undos() and time.monotonic() < deadline:
            history.run_due()
            time.sleep(0.05)
        hold = world.budget("watch_hold", "sync_worker", 1, seconds=WATCH_HOLD,
                            calendar_id=cal.watched.calendar_id)
        history.holding_until = time.monotonic() + 30
        history.subscribe(cal)
        deadline = time.monotonic() + 20
        held: list[dict[str, Any]] = []
        while cal.sub_id and not held and time.monotonic() < deadline:
            history.run_due()
            held = world.journal("watch_held", budget=hold)
            time.sleep(0.05)
        if not held:
            world.drop_budget(hold)
            history.holding_until = 0.0
            history.tally["pause_during_watch_missed"] += 1
            return False
        channel_id = held[0]["channel_id"]
        db = history.db
        while time.monotonic() < deadline and not (
                db.document(f"channels/{channel_id}").get().to_dict() or {}).get("resource_id"):
            time.sleep(0.05)
        history._paused = cal
        history.service.pause(cal.sub_id)
        # Landed while the watch was in flight: the channel stopped, its watch not yet
        # answered to the worker.
        stopped = (db.document(f"channels/{channel_id}").get().to_dict() or {}).get("state")
        in_flight = not world.journal("watch_released", budget=hold)
        history.holding_until = time.monotonic() + WATCH_HOLD + 1
        history.tally["pause"] += 1
        history.tally[f"pause_during_watch_{stopped}{'' if in_flight else '_too_late'}"] += 1

        def evidence() -> None:
            # ... and the activation that followed did not revive it: refused (seen
            # where it happened), or it failed otherwise (an injected Firestore error)
            # and the record is not active.
            final = (db.document(f"channels/{channel_id}").get().to_dict() or {}).get("state")
            refused = len(world.journal("activate_refused", channel_id=channel_id))
            history.tally[f"pause_during_watch_refused_{refused}_final_{final}"] += 1
            if in_flight and stopped == "stopped" and (refused or final != "active"):
                history.took_effect("pause_during_watch")

        history.evidence_checks.append(evidence)
        return True

    return pause


def test_every_subscription_converges_after_random_faults(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import app

    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    world.mutate(*([MUTATION] if MUTATION else []))
    app.reset()
    try:
        _story(world, app)
    finally:
        app.reset()


def _story(world: World, app: Any) -> None:
    env = world.env
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
    killer = WorkerKiller(world)
    renewer = RenewerLoop(env["CALSYNC_RENEWER_URL"], 1.5, Counter())
    bursts: list[float] = []
    extra = {"worker_kill": killer, "enqueue_refused": refuse_enqueues(world),
             "renewal_watch_fail": fail_renewal_watches(renewer),
             "firestore_error": firestore_errors(world), "renewer_crash": renewer_crash(world),
             "renewer_concurrent": concurrent_renewers(renewer, world, bursts),
             "duplicate_dispatch": duplicate_dispatch(world)}
    history = History(rng, control, service, cals, extra_faults=extra)
    history.db = db
    history.pause_during_watch = pause_during_watch(world)
    renewer.tally = history.tally
    for cal in cals:
        for _ in range(3):
            history.mutate(cal)
    for cal in cals[:3]:
        history.subscribe(cal)
    renewer.start()
    try:
        history.run(MUTATIONS, late=cals[3:], step_pause=0.5, fault_rate=0.3)
    finally:
        killer.join()
        world.proxy.accept()
        history.quiet(settle_seconds=SETTLE_SECONDS)
        for budget in history.budgets:
            world.drop_budget(budget)
        renewer.stop()
    _prove_effects(world, history, bursts)
    report = tally_text(history.tally)
    print(f"\n[liveness seed={SEED}] faults and actions: {report}", flush=True)
    print(f"[liveness seed={SEED}] evidence: {tally_text(history.taken)}", flush=True)
    assert not killer.errors, f"worker restart failed: {killer.errors}"
    missing = [k for k in history.fault_kinds() if not history.tally[f"fault_{k}"]]
    unproven = history.unproven() + [k for k in ("pause_during_watch", "clock_skew")
                                     if not history.taken[k]]
    # Convergence is checked (and reported) even when a fault is unproven: a broken
    # copy of the code (CALSYNC_LIVENESS_MUTATION) fails on what it broke.

    watched = [cal.watched for cal in cals]

    def check(last: dict[str, Any]) -> list[str]:
        return (invariants.problems(store, db, watched, control)
                + invariants.quiet_problems(world.queued_tasks(), env["CALSYNC_RENEWER_URL"],
                                            last))

    runs, problems = converge(check, lambda: renew(env["CALSYNC_RENEWER_URL"]),
                              MAX_RENEWER_RUNS, tally=history.tally)
    print(f"[liveness seed={SEED}] renewer runs after quiet: {runs}; problems: {problems}",
          flush=True)
    phase = f"not converged after {runs} renewer runs past quiet"
    if not problems:
        # The probe: one change per calendar, everything healthy. It must arrive through
        # its notification and task, in fewer runs than the repair sweeps need to act.
        for cal in cals:
            history.mutate(cal)
        control.flush_notifications(timeout=10)
        phase = "the probe (one change per calendar once healthy) did not arrive"
        probe_runs, problems = converge(check, lambda: renew(env["CALSYNC_RENEWER_URL"]),
                                        PROBE_RUNS, tally=history.tally)
        print(f"[liveness seed={SEED}] probe converged after {probe_runs} renewer runs; "
              f"problems: {problems}", flush=True)
    if problems:
        run_dir = world.run_dir
        print(log_summary(run_dir), recent_runs(run_dir, problems), sep="\n", flush=True)
        keep_logs(run_dir)
    report = tally_text(history.tally)
    assert not problems, (f"{phase} (seed {SEED}):\n  " + "\n  ".join(problems)
                          + f"\ntally: {report}"
                          + (f"\nalso unproven faults: {unproven}" if unproven else ""))
    assert not missing, f"fault kinds never injected: {missing} ({report})"
    assert not unproven, (f"faults injected without evidence that they acted: {unproven} "
                          f"(evidence: {tally_text(history.taken)}; {report})")


def _prove_effects(world: World, history: History, bursts: list[float]) -> None:
    """Evidence, from where each fault acted, for the faults the hooks inject."""
    for check in history.evidence_checks:
        check()
    history.prove_rate_limits(json_log_lines(world.run_dir / "function-sync_worker.log",
                                             "sync run"))
    for line in world.journal():
        event = line["event"]
        if event == "firestore_error":
            history.took_effect("firestore_error")
            history.tally[f"firestore_error_raised_{line['target']}_{line['mode']}"] += 1
        elif event == "renewer_crash":
            history.took_effect("renewer_crash")
        elif event in ("claim_refused", "claim_seen_held"):
            history.tally[f"renewer_{event}"] += 1
            # Within a burst of side-by-side runs: two runs went for one due channel
            # and one of them found the other's claim (refused, or seen in its row).
            if any(start <= float(line["t"]) <= start + 15 for start in bursts):
                history.took_effect("renewer_concurrent")
    _prove_clock_skew(world, history)


def _prove_clock_skew(world: World, history: History) -> None:
    """Channel records carry the creating process's `now` (`created_at`); Firestore
    stamps its own commit time: their difference is that process's offset."""
    db = history.db
    by_target: dict[str, list[float]] = {}
    for line in world.journal("channel_saved"):
        snapshot = db.document(f"channels/{line['channel_id']}").get()
        if not snapshot.exists or snapshot.create_time is None:
            continue
        created = datetime_from(line["created_at"])
        by_target.setdefault(line["target"], []).append(
            created - snapshot.create_time.timestamp())
    shown = []
    for target, offsets in by_target.items():
        skew = median(offsets)
        history.tally[f"clock_skew_{target}_ms"] = round(skew * 1000)
        if abs(skew - CLOCK_OFFSETS.get(target, 0.0)) < 1.0:
            shown.append(target)
    if {"sync_worker", "renew_channels"} <= set(shown):
        history.took_effect("clock_skew")


def datetime_from(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()
