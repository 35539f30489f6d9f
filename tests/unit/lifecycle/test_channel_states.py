"""Issue 21, items 2 and 4: channel states move forward only, a renewal re-checks its
claim (whose span is a setting), and a lapsed channel's replacement brings a sync."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.lifecycle.world import World


def test_a_pause_during_the_runs_watch_leaves_the_channel_stopped() -> None:
    world = World()
    sub_id = world.subscribe("cal")
    world.served(sub_id)
    world.watches.in_flight = lambda: world.service.pause(sub_id)
    world.service.ensure_channel(world.sub(sub_id))  # the run's watch, paused meanwhile
    [channel] = world.db.channels_of(sub_id)
    assert channel.state == "stopped"  # never turned back to active
    assert world.watches.stopped() == [channel.id]  # and closed on Google's side
    assert world.service.resume(sub_id)
    world.served(sub_id)
    assert world.service.ensure_channel(world.sub(sub_id))  # the resumed run opens one
    assert [c.state for c in world.db.delivering_channels(sub_id)] == ["active"]


def test_a_first_watch_slower_than_the_pending_grace_is_not_revived() -> None:
    world = World()
    sub_id = world.subscribe("cal")
    world.served(sub_id)

    def renewer_replaces_it_meanwhile() -> None:
        world.advance(minutes=3)  # token minting and the watch outlast the 120 s grace
        assert world.renewer().run().renewed == 1

    world.watches.in_flight = renewer_replaces_it_meanwhile
    world.service.ensure_channel(world.sub(sub_id))
    slow = world.watches.watched()[0]
    assert len(world.delivering(sub_id)) == 1 and slow not in world.delivering(sub_id)
    # Abandoned, or already deleted as an expired abandoned record:
    assert world.states(sub_id).get(slow) in (None, "abandoned", "stopped")
    assert slow in world.watches.stopped()


def test_a_renewal_slower_than_its_claim_yields_to_the_run_that_took_over() -> None:
    world = World(CALSYNC_CHANNEL_CLAIM_SECONDS="60")
    sub_id, first = world.with_channel("cal")
    world.advance(days=6, hours=12)

    def second_run_after_the_claim_expired() -> None:
        world.advance(minutes=5)
        assert world.renewer().run().renewed == 1

    world.watches.in_flight = second_run_after_the_claim_expired
    world.renewer().run()
    [current] = world.db.delivering_channels(sub_id)
    assert current.state == "active"
    opened = set(world.watches.watched()) - {first, current.id}
    assert opened and opened <= set(world.watches.stopped())  # the late one is closed again
    assert world.states(sub_id)[first] in ("replaced", "stopped")


def test_the_claim_span_is_a_setting() -> None:
    world = World(CALSYNC_CHANNEL_CLAIM_SECONDS="900")
    assert world.settings.channel_claim == 900
    sub_id, first = world.with_channel("cal")
    world.advance(days=6, hours=12)

    def crash() -> None:
        raise RuntimeError("renewer instance killed mid-watch")

    world.watches.in_flight = crash
    with pytest.raises(RuntimeError):
        world.renewer().run()
    world.advance(minutes=5)  # past the old constant (2 min), within the setting (15 min)
    assert world.renewer().run().renewed == 0
    world.advance(minutes=11)
    assert world.renewer().run().renewed == 1
    assert len(world.delivering(sub_id)) == 1


QUIET_NET = {"CALSYNC_SAFETY_NET_INTERVAL_SECONDS": str(30 * 86400)}  # out of the way


def test_a_lapsed_active_channel_is_replaced_and_followed_by_a_sync() -> None:
    world = World(**QUIET_NET)
    sub_id, first = world.with_channel("cal")
    world.queue.tasks.clear()
    world.advance(days=7, hours=1)  # the renewer was down: it expired an hour ago
    assert world.renewer().run().renewed == 1
    assert [c.state for c in world.db.delivering_channels(sub_id)] == ["active"]
    assert world.queue.of(sub_id) == [(2, "channel")]  # changes in the gap announced nothing


def test_a_timely_renewal_needs_no_sync() -> None:
    world = World(**QUIET_NET)
    sub_id, _ = world.with_channel("cal")
    world.queue.tasks.clear()
    world.advance(days=6, hours=1)
    assert world.renewer().run().renewed == 1
    assert world.queue.of(sub_id) == []


def test_a_failed_renewal_leaves_one_delivering_record_that_is_retried() -> None:
    world = World()
    sub_id, first = world.with_channel("cal")
    world.advance(days=6, hours=12)
    world.watches.failures = 1
    report = world.renewer().run()
    assert report.failed == 1 and report.renewed == 0
    [retry] = world.db.delivering_channels(sub_id)
    assert retry.state == "pending" and retry.expiration == world.clock[0] + timedelta(
        seconds=60)  # its sort key is its next attempt
    assert world.states(sub_id)[first] == "replaced"  # still accepted until it expires
    world.advance(seconds=61)
    assert world.renewer().run().renewed == 1
    assert [c.state for c in world.db.delivering_channels(sub_id)] == ["active"]
