"""Liveness of an account's calendar list through the real task path (DESIGN.md,
"Accounts", "Liveness"): a hooked local stack (tests/faults/world.py) on small
intervals with the safety net far beyond the test; the account is connected
in-process as the CLI does, shares and unshares go through the Calendar emulator,
whose calendar-list pushes reach the webhook; the Cloud Tasks emulator dispatches
every list run to the worker; the renewer is POSTed on wall time. Nothing forces a
list run by hand.

Faults on the list channel and its runs, one after the other, each shown to have
acted where it happened: a list notification dropped (the emulator's count), one
delivered twice (the emulator's count), one delayed, calendarList.watch failing
transiently on renewal (the emulator's calls of the method; the channel still
renewed), a 410 on calendarList.list (the worker's `full_after_410` runs), and a
list run failing after its first Firestore write (the hook's journal). Then the
account's calendars must be followed exactly as its policy (`all` readable) says,
each by an active subscription, with one delivering list channel not expired, no
list request left and the queue drained, on two consecutive clean samples."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from infra.calendar_emulator.control import EmulatorControl
from infra.calendar_emulator.testing import calendar_service
from tests.faults import invariants
from tests.faults.in_process import calsync_app, wait_for
from tests.faults.observe import RenewerLoop, converge, renew
from tests.faults.world import FAR, SMALL_CHANNEL_INTERVALS, World, hooked_stack

pytestmark = pytest.mark.slow
PROJECT = "calsync-account-liveness"
OWNER, OTHER = "acct-live@example.com", "acct-other@example.com"
READABLE = ("reader", "writer", "owner")
MAX_RENEWER_RUNS = 30
SMALL_INTERVALS = {
    "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": FAR,
    "CALSYNC_SWEEP_AFTER_SECONDS": "15",
    "CALSYNC_OUTBOX_SWEEP_SECONDS": "15",
    **SMALL_CHANNEL_INTERVALS,
    "CALSYNC_PUBLISH_TIMEOUT_SECONDS": "3",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with hooked_stack(tmp_path, PROJECT, SMALL_INTERVALS) as world:
        yield world


def test_an_accounts_calendars_converge_after_list_faults(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    with calsync_app(world, monkeypatch) as app:
        _story(world, app)


def _story(world: World, app: Any) -> None:
    env = world.env
    settings = app.cli_settings()
    accounts, db = app.account_service(settings), app.firestore_client(settings)
    base = env["CALENDAR_API_ENDPOINT"].split("/calendar/v3")[0]
    control = EmulatorControl(base)
    for user in (OWNER, OTHER):
        control.add_user(user)
    mine = calendar_service(base, OWNER)
    for n in range(2):
        mine.calendars().insert(body={"summary": f"own {n}"}).execute()
    theirs = calendar_service(base, OTHER)
    shared = [theirs.calendars().insert(body={"summary": f"theirs {n}"}).execute()["id"]
              for n in range(5)]

    def readable() -> set[str]:
        found: set[str] = set()
        token = None
        while True:
            page = mine.calendarList().list(pageToken=token).execute()
            found |= {item["id"] for item in page.get("items", [])
                      if item.get("accessRole") in READABLE}
            token = page.get("nextPageToken")
            if not token:
                return found

    def account() -> dict[str, Any]:
        return db.document(f"accounts/{account_id}").get().to_dict() or {}

    def followed() -> dict[str, str]:
        """calendar id -> status of each subscription the account follows."""
        return {cal: status for cal, (_, status)
                in invariants.account_followed(db, account_id).items()}

    def list_channel() -> str:
        return str(account().get("channel_id") or "")

    def pushes(outcome: str) -> int:
        return int(control.counters().get("notifications", {}).get(outcome, 0))

    def full_after_410() -> int:
        """List runs the worker logged as a full listing after a 410."""
        return sum(line.count('"mode":"full_after_410"') for path in
                   world.run_dir.glob("function-*.log") for line in
                   path.read_text(errors="replace").splitlines() if '"list run"' in line)

    def follows(calendar_id: str, yes: bool = True) -> Callable[[], bool]:
        return lambda: (calendar_id in followed()) == yes

    account_id = accounts.connect(OWNER, "bearer").account.id
    renewer = RenewerLoop(env["CALSYNC_RENEWER_URL"], 1.5, Counter()).start()
    tally: Counter[str] = Counter()
    try:
        wait_for("the account's first listing followed", lambda: set(followed()) == readable())
        assert list_channel()

        # A list notification dropped: the next one carries both changes.
        dropped = pushes("dropped")
        control.drop_notifications(1, channel_id=list_channel())
        control.share_calendar(shared[0], OWNER, "reader")
        wait_for("the dropped push counted", lambda: pushes("dropped") > dropped, 20)
        tally["list_push_dropped"] += pushes("dropped") - dropped
        control.clear_notification_faults()
        control.share_calendar(shared[1], OWNER, "writer")
        wait_for("both shares followed", lambda: {shared[0], shared[1]} <= set(followed()))

        # Delivered twice: coalesced into the same request, the calendar left once.
        duplicated = pushes("duplicated")
        control.duplicate_notifications(1, channel_id=list_channel())
        control.unshare_calendar(shared[0], OWNER)
        wait_for("the duplicate push counted", lambda: pushes("duplicated") > duplicated, 20)
        tally["list_push_duplicated"] += pushes("duplicated") - duplicated
        control.clear_notification_faults()
        wait_for("the unshared calendar left", follows(shared[0], False))

        # Delayed: it still arrives and is served.
        control.delay_notifications(3.0, channel_id=list_channel())
        control.share_calendar(shared[2], OWNER, "reader")
        wait_for("the delayed share followed", follows(shared[2]))
        control.clear_notification_faults()
        tally["list_push_delayed"] += 1

        # calendarList.watch refused twice when the list channel is renewed: retried,
        # and the account keeps one delivering channel.
        old_channel = list_channel()
        watches = int(control.counters().get("calls", {}).get("calendarList.watch", 0))
        control.inject_failure("calendarList.watch", 503, "backendError", count=2)
        wait_for("the list channel renewed after its failed watches",
                 lambda: list_channel() not in ("", old_channel), 90)
        made = int(control.counters().get("calls", {}).get("calendarList.watch", 0)) - watches
        assert made >= 3, f"{made} calendarList.watch calls: the failures did not act"
        tally["list_watch_failed"] += 2

        # A 410 on calendarList.list: the run lists in full and reconciles both ways
        # (a calendar unshared while its push is dropped is left by the relisting).
        relists = full_after_410()
        control.invalidate_calendar_list_tokens(OWNER)
        control.drop_notifications(1, channel_id=list_channel())
        control.unshare_calendar(shared[1], OWNER)
        control.clear_notification_faults()
        control.share_calendar(shared[3], OWNER, "reader")
        wait_for("the relisting reconciled", lambda: shared[3] in followed()
                 and shared[1] not in followed(), 60)
        # The run's log line follows its commit: read it once it is written.
        wait_for("a list run after the 410 (the 410 acted)", lambda: full_after_410() > relists,
                 20)
        tally["list_410"] += 1

        # A list run fails after its first Firestore write (its lease taken): the task
        # is retried once the lease has passed.
        budget = world.budget("firestore_error", "sync_worker", count=1, after=True)
        control.share_calendar(shared[4], OWNER, "reader")
        wait_for("the crashed list run's calendar followed", follows(shared[4]), 60)
        crashed = world.journal("firestore_error", budget=budget)
        assert crashed, "the injected Firestore error never acted"
        world.drop_budget(budget)
        tally["list_run_crashed"] += len(crashed)
    finally:
        renewer.stop()

    def check(_: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        want, have = readable(), followed()
        if set(have) != want:
            problems.append(f"followed {sorted(have)} != readable {sorted(want)}")
        problems += [f"{cal} is {status}" for cal, status in have.items() if status != "active"]
        data = account()
        if data.get("requested_at") is not None:
            problems.append("a list request is left unserved")
        now = datetime.now(UTC)
        delivering = [c.to_dict() or {} for c in db.collection("channels")
                      .where(filter=FieldFilter("account_id", "==", account_id)).stream()
                      if (c.to_dict() or {}).get("state") in ("pending", "active")]
        if len(delivering) != 1:
            problems.append(f"{len(delivering)} delivering list channels")
        problems += ["an expired list channel" for c in delivering
                     if c.get("expiration") is not None and c["expiration"] <= now]
        if world.queued_tasks():
            problems.append(f"tasks queued: {world.queued_tasks()[:3]}")
        return problems

    runs, problems = converge(check, lambda: renew(env["CALSYNC_RENEWER_URL"]),
                              MAX_RENEWER_RUNS, tally=tally)
    assert not problems, f"after {runs} renewer runs: {problems}; faults {dict(tally)}"
    assert all(tally[k] >= 1 for k in ("list_push_dropped", "list_push_duplicated",
                                       "list_watch_failed", "list_410", "list_run_crashed"))
    print(f"converged after {runs} renewer runs; faults {dict(tally)}")
