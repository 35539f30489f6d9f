"""Issue 21, items 2 and 4 on the Firestore emulator: a channel record never moves back
(a stopped or abandoned one is never made active again), a renewal re-checks its
claim before it retires anything, and a lapsed channel's replacement brings a sync."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.lifecycle.conftest import Lifecycle


def _sub(lifecycle: Lifecycle, sub_id: str):  # type: ignore[no-untyped-def]
    sub = lifecycle.store.get_subscription(sub_id)
    assert sub is not None
    return sub


def test_a_pause_during_the_runs_watch_leaves_the_channel_stopped(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    lifecycle.calendar.in_flight = lambda: lifecycle.service.pause(sub_id)
    lifecycle.service.ensure_channel(_sub(lifecycle, sub_id))
    [(channel_id, state)] = lifecycle.channel_states(sub_id).items()
    assert state == "stopped"
    assert lifecycle.calendar.stopped() == [channel_id]
    assert lifecycle.doc(sub_id).get("channel_id") is None  # nothing recorded as current
    assert lifecycle.service.resume(sub_id)
    lifecycle.served(sub_id)
    assert lifecycle.service.ensure_channel(_sub(lifecycle, sub_id))
    assert [c.state for c in lifecycle.subs.delivering_channels(sub_id)] == ["active"]


def test_a_first_watch_slower_than_the_pending_grace_is_not_revived(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)

    def renewer_replaces_it_meanwhile() -> None:
        lifecycle.advance(minutes=3)
        assert lifecycle.renewer().run().renewed == 1

    lifecycle.calendar.in_flight = renewer_replaces_it_meanwhile
    lifecycle.service.ensure_channel(_sub(lifecycle, sub_id))
    slow = lifecycle.calendar.watched()[0]
    [current] = lifecycle.subs.delivering_channels(sub_id)
    assert current.id != slow and current.state == "active"
    # Abandoned, or already deleted as an expired abandoned record:
    assert lifecycle.channel_states(sub_id).get(slow) in (None, "abandoned", "stopped")
    assert slow in lifecycle.calendar.stopped()
    assert lifecycle.doc(sub_id)["channel_id"] == current.id


def test_a_renewal_slower_than_its_claim_yields_to_the_run_that_took_over(
    lifecycle: Lifecycle,
) -> None:
    lifecycle.configure(CALSYNC_CHANNEL_CLAIM_SECONDS="60")
    sub_id, first = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.served(sub_id)
    lifecycle.advance(days=6, hours=12)

    def second_run_after_the_claim_expired() -> None:
        lifecycle.advance(minutes=5)
        assert lifecycle.renewer().run().renewed == 1

    lifecycle.calendar.in_flight = second_run_after_the_claim_expired
    lifecycle.renewer().run()
    [current] = lifecycle.subs.delivering_channels(sub_id)
    assert current.state == "active"
    late = set(lifecycle.calendar.watched()) - {first, current.id}
    assert late and late <= set(lifecycle.calendar.stopped())
    assert lifecycle.doc(sub_id)["channel_id"] == current.id


def test_a_lapsed_active_channel_is_replaced_and_followed_by_a_sync(
    lifecycle: Lifecycle,
) -> None:
    lifecycle.configure(CALSYNC_SAFETY_NET_INTERVAL_SECONDS=str(30 * 86400))
    sub_id, _ = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.served(sub_id)
    lifecycle.queue.tasks.clear()
    lifecycle.advance(days=7, hours=1)
    assert lifecycle.renewer().run().renewed == 1
    assert [c.state for c in lifecycle.subs.delivering_channels(sub_id)] == ["active"]
    assert lifecycle.queue.tasks == [(sub_id, 2, "channel")]
    assert lifecycle.doc(sub_id)["requested_gen"] == 2


def test_a_failed_renewal_hands_over_to_a_pending_record_due_at_its_next_attempt(
    lifecycle: Lifecycle,
) -> None:
    from functions.errors import CalendarUnavailable

    sub_id, first = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.served(sub_id)
    lifecycle.advance(days=6, hours=12)
    lifecycle.calendar.fail_next = [CalendarUnavailable("backend 503")]
    assert lifecycle.renewer().run().failed == 1
    [retry] = lifecycle.subs.delivering_channels(sub_id)
    assert retry.state == "pending"
    assert retry.expiration == lifecycle.clock[0] + timedelta(seconds=60)
    assert lifecycle.channel_states(sub_id)[first] == "replaced"
    assert lifecycle.renewer().run().channel_reads == 0  # out of every query until then
