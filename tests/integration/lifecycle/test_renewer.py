"""Renewal, orphans, backoff, the pending-request sweep and the safety net."""

from __future__ import annotations

from datetime import timedelta

from functions.errors import CalendarUnavailable, CredentialsRejected
from functions.model import Channel
from tests.integration.lifecycle.conftest import Lifecycle


def test_expiring_channel_is_replaced_new_first_then_old_stopped(lifecycle: Lifecycle) -> None:
    sub_a, first = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.subscribe_with_channel("cal-b", "bob")
    lifecycle.calendar.calls.clear()
    lifecycle.advance(days=6, hours=1)  # both within the 1-day window now
    report = lifecycle.renewer().run()
    assert report.renewed == 2 and report.failed == 0
    kinds = [kind for kind, _ in lifecycle.calendar.calls]
    assert kinds == ["watch", "stop", "watch", "stop"]
    states = lifecycle.channel_states(sub_a)
    assert states[first] == "stopped"
    assert sorted(states.values()) == ["active", "stopped"]
    doc = lifecycle.db.collection("subscriptions").document(sub_a).get().to_dict()
    assert doc["channel_id"] != first
    assert doc["channel_expiration"] > lifecycle.clock[0] + timedelta(days=6)


def test_channels_outside_the_window_are_not_read_or_touched(lifecycle: Lifecycle) -> None:
    for n in range(5):
        sub_id, _ = lifecycle.subscribe_with_channel(f"cal-{n}")
        lifecycle.served(sub_id)
    lifecycle.calendar.calls.clear()
    report = lifecycle.renewer().run()
    assert report.renewed == 0 and report.channel_reads == 0
    assert lifecycle.calendar.calls == []


def test_failed_renewal_backs_off_shows_in_status_and_retries(lifecycle: Lifecycle) -> None:
    sub_id, _ = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.fail_next = [CalendarUnavailable("backend 503")]
    report = lifecycle.renewer().run()
    assert report.failed == 1 and report.renewed == 0
    status = lifecycle.service.status(sub_id)
    assert status.renewal_error is not None and "CalendarUnavailable" in status.renewal_error
    lifecycle.calendar.calls.clear()
    assert lifecycle.renewer().run().renewed == 0  # still backing off
    assert lifecycle.calendar.calls == []
    lifecycle.advance(minutes=2)
    assert lifecycle.renewer().run().renewed == 1
    assert lifecycle.service.status(sub_id).renewal_error is None


def test_rejected_credentials_put_the_subscription_in_error_and_abandon(
    lifecycle: Lifecycle,
) -> None:
    sub_id, channel_id = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.fail_next = [CredentialsRejected("invalid_grant")]
    report = lifecycle.renewer().run()
    assert report.abandoned == 1
    status = lifecycle.service.status(sub_id)
    assert status.status == "error" and "credentials rejected" in (status.last_error or "")
    assert lifecycle.channel_states(sub_id)[channel_id] == "abandoned"


def test_orphaned_channels_are_stopped(lifecycle: Lifecycle) -> None:
    sub_id, channel_id = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.subs.update(sub_id, {"status": "paused"})
    lifecycle.advance(days=6, hours=12)
    report = lifecycle.renewer().run()
    assert report.orphans_stopped == 1 and report.renewed == 0
    assert ("stop", channel_id) in lifecycle.calendar.calls
    assert lifecycle.channel_states(sub_id)[channel_id] == "stopped"


def test_stuck_pending_channel_is_retried_after_its_grace(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    # A crash between saving `pending` and the watch call leaves a pending record:
    lifecycle.subs.save_channel(
        Channel("stuck", sub_id, "pending", expiration=lifecycle.clock[0]), lifecycle.clock[0])
    lifecycle.advance(minutes=3)
    assert lifecycle.renewer().run().renewed == 1
    states = lifecycle.channel_states(sub_id)
    assert states["stuck"] == "abandoned" and "active" in states.values()
    assert len(lifecycle.delivering(sub_id)) == 1


def test_a_renewal_that_crashed_midway_is_finished_without_a_second_watch(
    lifecycle: Lifecycle,
) -> None:
    sub_id, old = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.advance(days=6, hours=12)
    sub = lifecycle.store.get_subscription(sub_id)
    assert sub is not None
    lifecycle.service.open_channel(sub)  # the replacement opened, then the renewer died
    lifecycle.calendar.calls.clear()
    report = lifecycle.renewer().run()
    assert report.retired == 1 and report.renewed == 0
    assert [k for k, _ in lifecycle.calendar.calls] == ["stop"]
    assert lifecycle.channel_states(sub_id)[old] == "stopped"
    assert len(lifecycle.delivering(sub_id)) == 1


def test_two_renewer_runs_never_both_renew_one_channel(lifecycle: Lifecycle) -> None:
    sub_id, channel_id = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.advance(days=6, hours=12)
    now = lifecycle.clock[0]
    # Another run claimed it a moment ago and is renewing it right now.
    assert lifecycle.subs.claim_channel(channel_id, "active", now, now + timedelta(minutes=2))
    lifecycle.calendar.calls.clear()
    report = lifecycle.renewer().run()
    assert report.renewed == 0 and lifecycle.calendar.calls == []
    assert not lifecycle.subs.claim_channel(channel_id, "active", now, now + timedelta(minutes=2))
    lifecycle.advance(minutes=3)  # a claim outlives a renewal, not a crashed renewer
    assert lifecycle.renewer().run().renewed == 1
    assert len(lifecycle.delivering(sub_id)) == 1


def test_sweep_requeues_a_request_left_without_a_task(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.queue.tasks.clear()  # as if the task had been lost
    lifecycle.advance(minutes=1)
    assert lifecycle.renewer().run().swept == 0  # younger than the sweep age
    lifecycle.advance(minutes=2)
    report = lifecycle.renewer().run()
    assert report.swept == 1 and report.oldest_pending_age_s == 180.0
    assert [(s, g) for s, g, _ in lifecycle.queue.tasks] == [(sub_id, 1)]


def test_sweep_leaves_a_rate_limited_request_to_its_retry(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.subs.update(sub_id, {"retry_at": lifecycle.clock[0] + timedelta(minutes=15)})
    lifecycle.queue.tasks.clear()
    lifecycle.advance(minutes=5)
    assert lifecycle.renewer().run().swept == 0
    lifecycle.advance(minutes=11)
    assert lifecycle.renewer().run().swept == 1


def test_sweep_clears_served_requests_so_it_stays_proportional(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    writer = lifecycle.db.document(f"subscriptions/{sub_id}/state/writer")
    writer.set({"synced_gen": 1, "claimed_gen": 1}, merge=True)
    lifecycle.subs.update(sub_id, {"last_synced_at": lifecycle.clock[0]})
    lifecycle.advance(minutes=5)
    first = lifecycle.renewer().run()
    assert first.swept == 0 and first.subscription_reads >= 1
    second = lifecycle.renewer().run()
    assert second.subscription_reads == 0 and second.oldest_pending_age_s is None


def test_a_never_synced_subscription_is_seen_by_the_safety_net(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    # Its first request was served without a commit (say the run failed for
    # good and a later one never came): claimed, not synced, last_synced_at null.
    lifecycle.db.document(f"subscriptions/{sub_id}/state/writer").set(
        {"synced_gen": 0, "claimed_gen": 1})
    lifecycle.subs.update(sub_id, {"requested_at": None})
    lifecycle.queue.tasks.clear()
    report = lifecycle.renewer().run()
    assert report.safety_net == 1
    assert lifecycle.queue.tasks == [(sub_id, 2, "safety")]


def test_safety_net_syncs_subscriptions_not_synced_within_the_interval(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    lifecycle.queue.tasks.clear()
    lifecycle.advance(minutes=30)
    assert lifecycle.renewer().run().safety_net == 0
    lifecycle.advance(minutes=31)
    assert lifecycle.renewer().run().safety_net == 1
    assert lifecycle.queue.tasks == [(sub_id, 2, "safety")]


def test_a_full_batch_with_progress_continues_later_under_a_stable_name(
    lifecycle: Lifecycle,
) -> None:
    for n in range(3):
        lifecycle.served(lifecycle.subscribe_with_channel(f"cal-{n}")[0])
    lifecycle.advance(days=6, hours=12)
    report = lifecycle.renewer(batch=2).run()
    assert report.renewed == 2 and report.continued
    assert lifecycle.renewer(batch=2).run().renewed == 1
    bucket = lifecycle.continued[0]
    assert bucket.startswith("renew-") and lifecycle.continued == [bucket]


def test_channels_backing_off_neither_starve_others_nor_fan_out_forever(
    lifecycle: Lifecycle,
) -> None:
    for n in range(4):
        sub_id, _ = lifecycle.subscribe_with_channel(f"cal-{n}")
        lifecycle.served(sub_id)
        lifecycle.subs.update(sub_id, {"last_synced_at": lifecycle.clock[0] + timedelta(days=7)})
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.fail_next = [CalendarUnavailable("down")] * 2
    first = lifecycle.renewer(batch=2).run()
    # Failures are not progress: no continuation for them (issue 21, item 5).
    assert first.failed == 2 and first.renewed == 0 and not first.continued
    # The two failing channels left the query (their retry records are due at
    # their next attempt, issue 21, item 1): the next run reaches the others.
    second = lifecycle.renewer(batch=2).run()
    assert second.renewed == 2 and second.failed == 0
    third = lifecycle.renewer(batch=2).run()
    assert third.renewed == 0 and third.channel_reads == 0 and not third.continued


def test_no_continuation_when_a_full_batch_made_no_progress(lifecycle: Lifecycle) -> None:
    # A Calendar outage: every due row is waiting (requests pending with their
    # tasks queued). A full batch of them must not start a loop of re-reads.
    for n in range(3):
        sub_id = lifecycle.subscribe(f"cal-{n}")
        lifecycle.db.document(f"subscriptions/{sub_id}/state/writer").set(
            {"synced_gen": 0, "claimed_gen": 0, "lease_until": lifecycle.clock[0]
             + timedelta(days=1)})
    lifecycle.advance(minutes=5)
    report = lifecycle.renewer(batch=2).run()
    assert report.swept == 0 and report.safety_net == 0
    assert not report.continued and lifecycle.continued == []
