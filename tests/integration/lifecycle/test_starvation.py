"""Issue 21, item 1 on the Firestore emulator: rows the renewer cannot act on move out
of the way (their next attempt time is their sort key), so more stuck rows than one
run may read (batch 1: five rows per section and run) never hide the rows behind."""

from __future__ import annotations

from datetime import timedelta

from functions.errors import CalendarUnavailable
from tests.integration.lifecycle.conftest import Lifecycle

STUCK = 6  # more than the five rows a batch-1 run reads per section


def test_watches_that_keep_failing_do_not_starve_other_retries(lifecycle: Lifecycle) -> None:
    for n in range(STUCK):
        lifecycle.calendar.refused[f"holiday-{n}"] = CalendarUnavailable("watch refused")
        sub_id = lifecycle.subscribe(f"holiday-{n}")
        lifecycle.served(sub_id)
        sub = lifecycle.store.get_subscription(sub_id)
        assert sub is not None and not lifecycle.service.ensure_channel(sub)
    lifecycle.advance(seconds=1)
    good = lifecycle.subscribe("cal-good")
    lifecycle.served(good)
    lifecycle.calendar.fail_next = [CalendarUnavailable("watch 503")]
    sub = lifecycle.store.get_subscription(good)
    assert sub is not None and not lifecycle.service.ensure_channel(sub)
    for _ in range(STUCK + 2):
        lifecycle.advance(minutes=1)
        lifecycle.renewer(batch=1).run()
    assert [c.state for c in lifecycle.subs.delivering_channels(good)] == ["active"]


def test_renewals_that_keep_failing_do_not_starve_healthy_channels(
    lifecycle: Lifecycle,
) -> None:
    for n in range(STUCK):
        lifecycle.served(lifecycle.subscribe_with_channel(f"broken-{n}")[0])
        lifecycle.calendar.refused[f"broken-{n}"] = CalendarUnavailable("token refused")
    lifecycle.advance(minutes=1)
    healthy, first = lifecycle.subscribe_with_channel("cal-good")
    lifecycle.served(healthy)
    lifecycle.advance(days=6, hours=1)
    for _ in range(STUCK + 4):
        lifecycle.renewer(batch=1).run()
        lifecycle.advance(minutes=5)
    assert lifecycle.channel_states(healthy)[first] in ("replaced", "stopped")
    [current] = lifecycle.subs.delivering_channels(healthy)
    assert current.state == "active" and current.expiration is not None
    assert current.expiration > lifecycle.clock[0] + timedelta(days=6)


def test_requests_whose_runs_keep_failing_do_not_starve_the_safety_net(
    lifecycle: Lifecycle,
) -> None:
    for n in range(STUCK):  # requests recorded and queued, every run of them fails
        sub_id = lifecycle.subscribe(f"failing-{n}")
        lifecycle.writer(sub_id, claimed_gen=0, synced_gen=0)
    lifecycle.advance(minutes=1)
    healthy = lifecycle.subscribe("quiet")
    lifecycle.served(healthy)
    lifecycle.queue.tasks.clear()
    lifecycle.advance(hours=1, minutes=5)
    for _ in range(3):
        lifecycle.renewer(batch=1).run()
        lifecycle.advance(seconds=30)
    assert (healthy, 2, "safety") in lifecycle.queue.tasks, lifecycle.queue.tasks


def test_requests_held_by_long_runs_do_not_starve_stranded_ones(lifecycle: Lifecycle) -> None:
    for n in range(STUCK):
        sub_id = lifecycle.subscribe(f"huge-{n}")
        lifecycle.subs.update(sub_id, {"requested_gen": 2, "queued_gen": 2})
        lifecycle.writer(sub_id, claimed_gen=1, lease_started_at=lifecycle.clock[0],
                         lease_until=lifecycle.clock[0] + timedelta(hours=1))
    lifecycle.advance(seconds=1)
    stranded = lifecycle.subscribe("stranded")
    lifecycle.queue.tasks.clear()  # its task is lost
    lifecycle.advance(minutes=3)
    for _ in range(3):
        lifecycle.renewer(batch=1).run()
        lifecycle.advance(seconds=30)
    origins = [origin for sub, _, origin in lifecycle.queue.tasks if sub == stranded]
    assert origins and all(o.startswith("sweep") for o in origins), lifecycle.queue.tasks
