"""The liveness check can fail: a small liveness scenario, run on the real code and on
deliberately broken copies of it, passes on the first and fails on each copy.

One local stack (tests/faults/world.py) serves every case; its functions run with the
test hooks (tests/faults/hooks.py), which switch one code path to its broken copy
inside the functions' own processes, and hold or fail what the scenario needs. The
backstops (safety net, sweep of stranded requests, outbox sweep) are set far beyond
the scenario's duration, so every change must arrive through its notification, its
task and the channel renewals. The broken copies (DESIGN.md "Liveness", issue 21):

- `webhook_enqueue`: the webhook records the request but queues no task;
- `renewal`: the renewer no longer renews active channels;
- `publish_drop`: a publish-only run releases its lease without the follow-up a
  sync request that met it needs (its task answered BUSY and is gone);
- `activate_any_state`: `activate_channel` makes a channel active whatever state it
  reached while its watch was in flight (a pause stopped it).

The scenario, on two calendars of a fresh user: subscribe A; a change on A (the
webhook's path); Pub/Sub silent while a change is synced, then a duplicate delivery
of A's task starts a publish-only run and a change arrives while it holds the lease
(its task meets BUSY); B subscribed with its first watch held, B paused while the
watch is in flight (after the webhook learnt the channel's resource id), resumed,
and changed; a change on A after its first channel's expiry (only a renewal
delivers it). Then the system must be quiet and converged (tests/faults/invariants.py)
on two consecutive samples within a few renewer runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.calendar_emulator.control import EmulatorControl
from infra.calendar_emulator.testing import calendar_service
from infra.local.logs import json_log_lines
from tests.faults import invariants
from tests.faults.history import event_body, subscribe
from tests.faults.in_process import calsync_app
from tests.faults.invariants import Watched
from tests.faults.observe import RenewerLoop, converge, renew
from tests.faults.world import BACKSTOPS_OFF, World, hooked_stack

pytestmark = pytest.mark.slow
PROJECT = "calsync-mutations"
SETTINGS = {
    **BACKSTOPS_OFF,
    "CALSYNC_MIN_SYNC_INTERVAL_SECONDS": "0.5",
    # B's wrongly revived channel must still be short of its renewal window when B
    # changes after the resume (a renewal then would heal the broken copy unseen).
    "CALSYNC_CHANNEL_TTL_SECONDS": "20",
    "CALSYNC_RENEWAL_WINDOW_SECONDS": "6",
    # Past the publish-only run's stalled publish (3 s) and its held release.
    "CALSYNC_LEASE_SECONDS": "15",
    "CALSYNC_CHANNEL_CLAIM_SECONDS": "5",
    "CALSYNC_PENDING_CHANNEL_GRACE_SECONDS": "6",
    "CALSYNC_RENEWAL_BACKOFF_SECONDS": "2",
    "CALSYNC_PUBLISH_TIMEOUT_SECONDS": "3",
}
STEP_WAIT = 15.0  # a change that has not arrived by then is stuck (backstops are off)
FINAL_RUNS = 8  # renewer runs after quiet, at most, to two consecutive clean samples
# B's first watch is held after Google answered it until the test, having paused B,
# lets it go (at most this long): no timing decides whether the pause lands inside.
WATCH_HOLD = 20.0
# The publish-only run's release is held until the request met it (at most this long,
# inside its lease).
RELEASE_HOLD = 10.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with hooked_stack(tmp_path_factory.mktemp("mutations"), PROJECT, SETTINGS) as world, \
            pytest.MonkeyPatch.context() as patch, calsync_app(world, patch):
        yield world


@dataclass
class Run:
    """One scenario run: where it got stuck (if it did), what the final check found,
    and the evidence that each step exercised the path it is about."""

    stuck: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    evidence: dict[str, int] = field(default_factory=dict)


class Stuck(Exception):
    """A change did not arrive: the scenario goes straight to the final check."""


def wait_for(what: str, check: Callable[[], Any], timeout: float = STEP_WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise Stuck(what)
        time.sleep(0.1)


def scenario(world: World, mutation: str | None) -> Run:
    from functions import app

    settings = app.cli_settings()
    service, store, db = (app.subscription_service(settings), app.store(settings),
                          app.firestore_client(settings))
    base = world.env["CALENDAR_API_ENDPOINT"].split("/calendar/v3")[0]
    control = EmulatorControl(base)
    owner = f"mut-{uuid.uuid4().hex[:8]}@example.com"
    control.add_user(owner)
    api = calendar_service(base, owner)
    events = api.events()
    cals = {name: api.calendars().insert(body={"summary": f"mutation {name}"}).execute()["id"]
            for name in ("A", "B")}
    for name, calendar_id in cals.items():
        for n in range(2):
            events.insert(calendarId=calendar_id, body=event_body_n(f"{name} seed {n}", n)
                          ).execute()
    subs: dict[str, str] = {}
    run = Run()
    started = time.time()

    def write(name: str, summary: str) -> None:
        events.insert(calendarId=cals[name],
                      body=event_body_n(summary, int(time.time()) % 20)).execute()

    def synced(name: str) -> int:
        sub_id = subs[name]
        ids = [i for batch in store.iter_live_ids(sub_id, 500) for i in batch]
        return len(ids)

    def listed(name: str) -> int:
        return len(invariants.listed(api, cals[name]))

    def caught_up(name: str) -> bool:
        return synced(name) == listed(name)

    def state(name: str) -> dict[str, Any]:
        return dict(store.get_writer_state(subs[name]))

    world.mutate(*([mutation] if mutation else []))
    run_tally: Counter[str] = Counter()
    renewer = RenewerLoop(world.env["CALSYNC_RENEWER_URL"], 1.0, run_tally).start()
    try:
        try:
            subs["A"] = subscribe(service, cals["A"], owner)
            wait_for("A's first sync", lambda: caught_up("A") and store.get_writer_state(
                subs["A"]).get("sync_token"))
            first_channel = wait_for("A's first channel", lambda: _active_channel(db, subs["A"]))

            # The webhook's path: a change, its notification, its task.
            write("A", "A change 1")
            wait_for("A's change 1 (the webhook's task)", lambda: caught_up("A"))

            # A publish-only run that meets a sync request.
            world.switch("publish_stall", True, seconds=8)
            write("A", "A change 2, Pub/Sub silent")
            wait_for("A's change 2 synced, unpublished", lambda: caught_up("A") and int(
                state("A").get("published_seq") or 0) < int(state("A").get("change_seq") or 0)
                and state("A").get("lease_until") is None)
            generation = state("A").get("lease_generation")
            world.switch("release_hold", True, seconds=RELEASE_HOLD)
            busy_before = busy_runs(world, subs["A"])
            answers: list[str] = []
            duplicate = threading.Thread(target=lambda: answers.append(
                world.dispatch(subs["A"])), daemon=True)
            duplicate.start()
            # The run stalls in its publish (the switch), so its lease stays recorded:
            # the step's usual wait, since a loaded machine may dispatch it late.
            wait_for("the publish-only run's lease", lambda: state("A").get(
                "lease_generation") != generation and state("A").get("lease_until"))
            write("A", "A change 3, during a publish-only run")
            # Its notification's task meets the lease (answers BUSY, and is gone):
            # only then may the run release, so the request is always pending then.
            wait_for("change 3's task to meet the publish-only run",
                     lambda: busy_runs(world, subs["A"]) > busy_before)
            world.switch("release_hold", False)
            duplicate.join(30)
            run.evidence["publish_only_met_a_request"] = len(world.journal(
                "publish_only_released", subscription=subs["A"], request_pending=True))
            world.switch("publish_stall", False)
            wait_for("A's change 3 (the publish-only run's follow-up)", lambda: caught_up("A"))

            # A pause during B's first watch.
            hold = world.budget("watch_hold", "sync_worker", 1, seconds=WATCH_HOLD,
                                calendar_id=cals["B"], until_switch="watch_release")
            subs["B"] = subscribe(service, cals["B"], owner)
            held = wait_for("B's first watch held", lambda: world.journal(
                "watch_held", budget=hold))[0]
            wait_for("the webhook to learn B's resource id", lambda: db.document(
                f"channels/{held['channel_id']}").get().to_dict().get("resource_id"), 3)
            service.pause(subs["B"])
            world.switch("watch_release", True)
            wait_for("B's watch answered", lambda: world.journal("watch_released", budget=hold))
            service.resume(subs["B"])

            def resumed() -> bool:
                sub = store.get_subscription(subs["B"])
                return bool(sub and sub.requested_gen <= int(state("B").get("synced_gen") or 0)
                            and state("B").get("lease_until") is None)

            # The resume's own run lists B, so the change comes after it: only a
            # channel opened by that run announces it.
            wait_for("B's run after resume", resumed)
            write("B", "B change after resume")
            run.evidence["activation_after_pause"] = len(world.journal(
                "activate_refused", channel_id=held["channel_id"])) + len(world.journal(
                    "mutation", channel_id=held["channel_id"]))
            wait_for("B's change after resume", lambda: caught_up("B"))

            # A change on A once its first channel has expired: only a renewal hears it.
            expired = first_channel[1]["expiration"].timestamp() + 1
            time.sleep(max(expired - time.time(), 0))
            write("A", "A change 4, after the first channel's expiry")
            current = _active_channel(db, subs["A"])
            run.evidence["channel_renewed"] = int(current is not None
                                                  and current[0] != first_channel[0])
            wait_for("A's change 4 (through the renewed channel)", lambda: caught_up("A"))
        except Stuck as stuck:
            run.stuck.append(str(stuck))
        control.flush_notifications(timeout=10)
        renewer.stop()
        watched = [Watched(cals[name], owner, api) for name in subs]

        def check(report: dict[str, Any]) -> list[str]:
            return (invariants.problems(store, db, watched, control)
                    + invariants.quiet_problems(world.queued_tasks(),
                                                world.env["CALSYNC_RENEWER_URL"], report))

        _, run.problems = converge(check, lambda: renew(world.env["CALSYNC_RENEWER_URL"]),
                                   FINAL_RUNS)
    finally:
        renewer.stop()
        world.mutate()
        for name in ("publish_stall", "release_hold", "watch_release"):
            world.switch(name, False)
        run.evidence["mutation_taken"] = len([line for line in world.journal("mutation")
                                              if line["t"] >= started])
        for sub_id in subs.values():
            try:
                service.unsubscribe(sub_id)
            except Exception as err:  # noqa: BLE001 - the next case starts clean anyway
                run.evidence[f"unsubscribe_failed_{type(err).__name__}"] = 1
    print(f"\n[mutation {mutation}] stuck: {run.stuck}; problems: {run.problems}; "
          f"evidence: {run.evidence}; renewer: {dict(run_tally)}", flush=True)
    return run


def busy_runs(world: World, sub_id: str) -> int:
    """Runs of the subscription that met another's lease (answered BUSY)."""
    return len([line for line in json_log_lines(world.run_dir / "function-sync_worker.log",
                                                "sync run")
                if line.get("subscription") == sub_id and line.get("outcome") == "busy"])


def event_body_n(summary: str, n: int) -> dict[str, Any]:
    import random

    return event_body(random.Random(n), summary)


def _active_channel(db: Any, sub_id: str) -> tuple[str, dict[str, Any]] | None:
    active = [(cid, doc) for cid, doc in invariants.delivering_channels(db, sub_id)
              if doc.get("state") == "active" and doc.get("expiration") is not None
              and doc["expiration"] > datetime.now(UTC)]
    return active[0] if len(active) == 1 else None


def test_the_scenario_converges_on_the_real_code(world: World) -> None:
    run = scenario(world, None)
    assert not run.stuck and not run.problems, f"stuck at {run.stuck}: {run.problems}"
    # Each step exercised its path: the request met the publish-only run (its task
    # answered BUSY), the activation found B's channel stopped by the pause, A's
    # first channel was replaced by a renewal.
    assert run.evidence["publish_only_met_a_request"] >= 1, run.evidence
    assert run.evidence["activation_after_pause"] >= 1, run.evidence
    assert run.evidence["channel_renewed"] == 1, run.evidence
    assert run.evidence["mutation_taken"] == 0, run.evidence


@pytest.mark.parametrize("mutation", ["webhook_enqueue", "renewal", "publish_drop",
                                      "activate_any_state"])
def test_each_broken_copy_fails_the_scenario(world: World, mutation: str) -> None:
    run = scenario(world, mutation)
    assert run.evidence["mutation_taken"] >= 1, (
        f"the broken copy {mutation} was never reached: {run.evidence}")
    assert run.stuck or run.problems, (
        f"the liveness scenario passed with {mutation} broken: {run.evidence}")

