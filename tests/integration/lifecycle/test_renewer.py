"""Renewal, orphans, backoff, the pending-request sweep and the safety net."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.errors import CalendarUnavailable, CredentialsRejected
from tests.integration.lifecycle.conftest import Lifecycle


def test_expiring_channel_is_replaced_new_first_then_old_stopped(lifecycle: Lifecycle) -> None:
    sub, first = lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    lifecycle.service.subscribe("cal-b", "bob", "bearer", sub_id="sub-b")
    lifecycle.calendar.calls.clear()
    lifecycle.advance(days=6, hours=1)  # both within the 1-day window now
    report = lifecycle.renewer().run()
    assert report.renewed == 2 and report.failed == 0
    kinds = [kind for kind, _ in lifecycle.calendar.calls]
    assert kinds == ["watch", "stop", "watch", "stop"]
    states = lifecycle.channel_states("sub-a")
    assert states[first.channel_id] == "stopped"
    assert sorted(states.values()) == ["active", "stopped"]
    doc = lifecycle.db.collection("subscriptions").document("sub-a").get().to_dict()
    assert doc["channel_id"] != first.channel_id
    assert doc["channel_expiration"] > lifecycle.clock[0] + timedelta(days=6)


def test_channels_outside_the_window_are_not_read_or_touched(lifecycle: Lifecycle) -> None:
    for n in range(5):
        lifecycle.service.subscribe(f"cal-{n}", "alice", "bearer", sub_id=f"sub-{n}")
    lifecycle.calendar.calls.clear()
    report = lifecycle.renewer().run()
    assert report.renewed == 0 and report.channel_reads == 0
    assert lifecycle.calendar.calls == []


def test_failed_renewal_backs_off_shows_in_status_and_retries(lifecycle: Lifecycle) -> None:
    lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.fail_next = [CalendarUnavailable("backend 503")]
    report = lifecycle.renewer().run()
    assert report.failed == 1 and report.renewed == 0
    status = lifecycle.service.status("sub-a")
    assert status.renewal_error is not None and "CalendarUnavailable" in status.renewal_error
    lifecycle.calendar.calls.clear()
    assert lifecycle.renewer().run().renewed == 0  # still backing off
    assert lifecycle.calendar.calls == []
    lifecycle.advance(minutes=2)
    assert lifecycle.renewer().run().renewed == 1
    assert lifecycle.service.status("sub-a").renewal_error is None


def test_rejected_credentials_put_the_subscription_in_error_and_abandon(
    lifecycle: Lifecycle,
) -> None:
    _, opened = lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.fail_next = [CredentialsRejected("invalid_grant")]
    report = lifecycle.renewer().run()
    assert report.abandoned == 1
    status = lifecycle.service.status("sub-a")
    assert status.status == "error" and "credentials rejected" in (status.last_error or "")
    assert lifecycle.channel_states("sub-a")[opened.channel_id] == "abandoned"


def test_orphaned_channels_are_stopped(lifecycle: Lifecycle) -> None:
    _, opened = lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    lifecycle.subs.update("sub-a", {"status": "paused"})
    lifecycle.advance(days=6, hours=12)
    report = lifecycle.renewer().run()
    assert report.orphans_stopped == 1 and report.renewed == 0
    assert ("stop", opened.channel_id) in lifecycle.calendar.calls
    assert lifecycle.channel_states("sub-a")[opened.channel_id] == "stopped"


def test_stuck_pending_channel_is_retried_after_its_grace(lifecycle: Lifecycle) -> None:
    lifecycle.calendar.fail_next = [CalendarUnavailable("timeout")]
    with pytest.raises(CalendarUnavailable):
        lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    assert list(lifecycle.channel_states("sub-a").values()) == ["abandoned"]
    # A crash between saving `pending` and the watch call leaves a pending record:
    from functions.channel_store import Channel

    lifecycle.service._channel_store.save_channel(
        Channel("stuck", "sub-a", "pending", expiration=lifecycle.clock[0]), lifecycle.clock[0])
    lifecycle.advance(minutes=3)
    assert lifecycle.renewer().run().renewed == 1
    states = lifecycle.channel_states("sub-a")
    assert states["stuck"] == "abandoned" and "active" in states.values()


def test_sweep_requeues_a_request_left_without_a_task(lifecycle: Lifecycle) -> None:
    lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    lifecycle.queue.tasks.clear()  # as if the task had been lost
    lifecycle.advance(minutes=1)
    assert lifecycle.renewer().run().swept == 0  # younger than the sweep age
    lifecycle.advance(minutes=2)
    report = lifecycle.renewer().run()
    assert report.swept == 1
    assert [(s, g) for s, g, _ in lifecycle.queue.tasks] == [("sub-a", 1)]


def test_sweep_clears_served_requests_so_it_stays_proportional(lifecycle: Lifecycle) -> None:
    lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    writer = lifecycle.db.document("subscriptions/sub-a/state/writer")
    writer.set({"synced_gen": 1, "claimed_gen": 1}, merge=True)
    lifecycle.advance(minutes=5)
    first = lifecycle.renewer().run()
    assert first.swept == 0 and first.subscription_reads >= 1
    second = lifecycle.renewer().run()
    assert second.subscription_reads == 0


def test_safety_net_syncs_subscriptions_not_synced_within_the_interval(
    lifecycle: Lifecycle,
) -> None:
    lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    lifecycle.subs.update("sub-a", {"last_synced_at": lifecycle.clock[0]})
    lifecycle.db.document("subscriptions/sub-a/state/writer").set(
        {"synced_gen": 1, "claimed_gen": 1}, merge=True)
    lifecycle.queue.tasks.clear()
    lifecycle.advance(minutes=30)
    assert lifecycle.renewer().run().safety_net == 0
    lifecycle.advance(minutes=31)
    assert lifecycle.renewer().run().safety_net == 1
    assert lifecycle.queue.tasks == [("sub-a", 2, "safety")]


def test_bounded_batch_fans_out_a_continuation(lifecycle: Lifecycle) -> None:
    for n in range(3):
        lifecycle.service.subscribe(f"cal-{n}", "alice", "bearer", sub_id=f"sub-{n}")
    lifecycle.advance(days=6, hours=12)
    report = lifecycle.renewer(batch=2).run()
    assert report.renewed == 2 and report.continued and lifecycle.continued == [1]
    assert lifecycle.renewer(batch=2).run().renewed == 1


def test_channels_backing_off_neither_starve_others_nor_fan_out_forever(
    lifecycle: Lifecycle,
) -> None:
    for n in range(4):
        lifecycle.service.subscribe(f"cal-{n}", "alice", "bearer", sub_id=f"sub-{n}")
        lifecycle.db.document(f"subscriptions/sub-{n}/state/writer").set(
            {"synced_gen": 1, "claimed_gen": 1})  # served: only channels are due
        lifecycle.subs.update(f"sub-{n}", {"last_synced_at": lifecycle.clock[0]
                                           + timedelta(days=7)})
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.fail_next = [CalendarUnavailable("down")] * 2
    first = lifecycle.renewer(batch=2).run()
    assert first.failed == 2 and first.renewed == 0 and first.continued
    # The two failing channels lead the query now; the next run reads past them.
    second = lifecycle.renewer(batch=2).run()
    assert second.renewed == 2 and second.failed == 0
    third = lifecycle.renewer(batch=2).run()
    assert third.renewed == 0 and third.channel_reads == 2 and not third.continued
