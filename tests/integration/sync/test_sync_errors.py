"""Calendar API errors injected in the emulator: 410 mid-sync, rate limits, quota,
server errors, rejected credentials, a vanished calendar."""

from __future__ import annotations

from typing import Any

import pytest

from functions.model import Subscription
from functions.sync.engine import Outcome

from .harness import Harness, HookedCalendar, kinds


@pytest.fixture
def world(firestore_db: Any, calendar: Any) -> Harness:
    return Harness(firestore_db, calendar, "carol@example.com", page_size=4)


def _token(world: Harness) -> str | None:
    return world.store.get_writer_state(world.sub.id).get("sync_token")


def test_410_mid_incremental_sync_resyncs_and_reports_deletions_once(world: Harness):
    ids = [world.insert(f"e{i}", day=i)["id"] for i in range(14)]
    world.sync()
    start = len(world.check())
    deleted = ids[:7]
    for event_id in deleted:  # seven deletions: the incremental listing spans pages
        world.delete(event_id)
    world.patch(ids[10], summary="changed")

    def expire_token(call: int) -> None:
        if call == 2:  # page 1 of the incremental listing is committed by now
            world.emulator.control.inject_failure("events.list", 410, "fullSyncRequired")

    report = world.sync(calendar=HookedCalendar(world.calendar, expire_token))
    assert report.outcome is Outcome.SYNCED and report.mode == "full_after_410"
    assert report.reconciled > 0  # some deletions were only found by reconciliation
    entries = world.check()[start:]
    # The full listing that replaced the incremental one ends with one `resync_required`.
    assert kinds(entries)[-1] == ("resync_required", None)
    assert sorted(kinds(entries[:-1])) == sorted(
        [("deleted", i) for i in deleted] + [("updated", ids[10])])


def test_events_deleted_while_the_token_was_invalid_are_reported_once(world: Harness):
    series = world.insert_series("daily", count=3)
    ids = [world.insert(f"e{i}", day=i)["id"] for i in range(6)]
    world.sync()
    exception = world.instances(series["id"])[0]["id"]
    world.patch(exception, summary="moved")
    world.sync()
    start = len(world.check())
    world.emulator.control.invalidate_sync_tokens(world.user)
    world.delete(ids[0])
    world.delete(series["id"])
    world.patch(ids[1], summary="renamed")
    report = world.sync()
    assert report.mode == "full_after_410"
    entries = world.check()[start:]
    assert kinds(entries)[-1] == ("resync_required", None)
    assert sorted(kinds(entries[:-1])) == sorted([
        ("deleted", ids[0]), ("deleted", series["id"]), ("deleted", exception),
        ("updated", ids[1])])
    assert world.sync().entries == {"created": 0, "updated": 0, "deleted": 0}


@pytest.mark.parametrize(("status", "reason", "quota"), [
    (429, "rateLimitExceeded", False),
    (403, "userRateLimitExceeded", False),
    (403, "rateLimitExceeded", False),
    (403, "quotaExceeded", True),
])
def test_rate_limits_back_off_without_advancing_the_token(
    world: Harness, status: int, reason: str, quota: bool
):
    ids = [world.insert(f"e{i}", day=i)["id"] for i in range(6)]
    world.sync()
    token = _token(world)
    world.patch(ids[0], summary="new")
    world.emulator.control.inject_failure("events.list", status, reason)
    report = world.sync()
    assert report.outcome is Outcome.RATE_LIMITED and report.retry_at is not None
    assert _token(world) == token
    delay = (report.retry_at - world.clock()).total_seconds()
    assert (delay > 600) is quota
    [(_, _, not_before, origin)] = world.queue.tasks
    assert origin == "retry" and not_before == report.retry_at
    assert world.store.get_subscription(world.sub.id).retry_at == report.retry_at
    # Until then a delivery is deferred and keeps a task queued for that moment,
    # under a name of its own (never the name of a task that may be itself).
    assert world.sync().outcome is Outcome.DEFERRED
    assert len(world.queue.tasks) == 2
    assert {task[2] for task in world.queue.tasks} == {report.retry_at}
    assert world.queue.tasks[1][3].startswith("defer")
    world.clock.advance(delay)
    assert world.sync().outcome is Outcome.SYNCED
    assert world.store.get_subscription(world.sub.id).retry_at is None
    assert kinds(world.check())[-1] == ("updated", ids[0])


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(world: Harness, status: int):
    ids = [world.insert(f"e{i}", day=i)["id"] for i in range(9)]
    world.sync()
    token = _token(world)
    for event_id in ids:
        world.patch(event_id, summary="v2")

    def fail(call: int) -> None:
        if call == 2:
            world.emulator.control.inject_failure("events.list", status, "backendError")

    report = world.sync(calendar=HookedCalendar(world.calendar, fail))
    assert report.outcome is Outcome.TRANSIENT and "CalendarUnavailable" in (report.error or "")
    assert _token(world) == token
    assert world.store.get_writer_state(world.sub.id)["lease_until"] is None  # released
    assert world.sync().outcome is Outcome.SYNCED
    entries = world.check()
    assert sorted(k for k in kinds(entries) if k[0] == "updated") == sorted(
        ("updated", i) for i in ids)


def test_rejected_credentials_put_the_subscription_in_error(world: Harness):
    world.insert("e", day=1)
    world.emulator.control.inject_failure("events.list", 401, "authError")
    report = world.sync()
    assert report.outcome is Outcome.FAILED and "CredentialsRejected" in (report.error or "")
    sub = world.store.get_subscription(world.sub.id)
    assert sub.status == "error" and "CredentialsRejected" in (sub.last_error or "")
    assert world.sync().outcome is Outcome.INACTIVE
    # No event entry; the one entry tells consumers the owner must grant access again.
    assert [(e.kind, e.event_id) for e in world.feed()] == [("reauthorization_required", None)]


def test_vanished_calendar_puts_the_subscription_in_error(world: Harness):
    gone = Subscription(id="sub-gone", calendar_id="nope@group.calendar.google.com",
                        owner=world.user, credentials_ref="bearer")
    world.store.save_subscription(gone)
    report = world.engine().run(gone.id)
    assert report.outcome is Outcome.FAILED and "CalendarGone" in (report.error or "")
    assert world.store.get_subscription(gone.id).status == "error"


def test_unknown_subscription_is_a_no_op(world: Harness):
    assert world.engine().run("no-such-sub").outcome is Outcome.NOT_FOUND
