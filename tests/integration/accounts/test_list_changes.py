"""The calendar list's changes against the emulator: a 410 relists in full and reconciles
both ways; an access role dropping below the policy, or rising to it, is followed by
the incremental path; the owner's policy decides."""

from __future__ import annotations

from functions.model import CALENDAR_ADDED, CALENDAR_REMOVED, CalendarPolicy
from tests.integration.accounts.conftest import ANN, BOB, World


def test_a_410_on_the_calendar_list_relists_and_reconciles_both_ways(world: World) -> None:
    control = world.control
    primary = control.add_user(ANN)
    leaving = control.create_calendar(ANN, summary="Leaving")["id"]
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    assert world.followed(account_id) == {primary, leaving}

    # Changes nobody is told about (every push of the list dropped), then the token expires.
    channel = world.list_channel(account_id)
    control.set_notification_faults(channel.id, drop=100)
    arriving = control.create_calendar(ANN, summary="Arriving")["id"]
    shared = control.create_calendar(BOB, summary="Shared")["id"]
    control.share_calendar(shared, ANN, "writer")
    control.delete_calendar(leaving)
    control.invalidate_calendar_list_tokens(ANN)
    world.drain()
    assert world.followed(account_id) == {primary, leaving}  # nothing announced it

    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()  # run it here, to read its report
    report = world.account_sync.run(account_id)
    assert (report.outcome.value, report.mode) == ("synced", "full_after_410")
    assert (report.added, report.removed) == (2, 1)
    world.drain()
    assert world.followed(account_id) == {primary, arriving, shared}
    members = world.members(account_id)
    assert members[leaving]["status"] == "removed"
    assert world.kinds(members[leaving]["id"])[-1] == CALENDAR_REMOVED
    removed = world.feed(members[leaving]["id"])[-1]
    assert removed.kind == CALENDAR_REMOVED
    for calendar_id in (arriving, shared):
        assert world.kinds(members[calendar_id]["id"])[0] == CALENDAR_ADDED
    # The relisting stored a new token: the next run is incremental again.
    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()
    assert world.account_sync.run(account_id).mode == "incremental"


def test_a_role_falling_below_the_policy_leaves_and_rising_again_returns(world: World) -> None:
    control = world.control
    control.add_user(ANN)
    team = control.create_calendar(BOB, summary="Team")["id"]
    control.share_calendar(team, ANN, "writer")
    connected = world.account_service.connect(ANN, world.grant(ANN),
                                              CalendarPolicy(min_access_role="writer"))
    world.drain()
    account_id = connected.account.id
    assert team in world.followed(account_id)
    sub_id = world.members(account_id)[team]["id"]

    control.share_calendar(team, ANN, "reader")  # still on the list, below the policy
    world.drain()
    assert team not in world.followed(account_id)
    last = world.db.collection(f"subscriptions/{sub_id}/changes").order_by(
        "seq", direction="DESCENDING").limit(1).get()[0].to_dict()
    assert last["kind"] == CALENDAR_REMOVED
    assert last["details"]["reason"] == "access_below_policy"

    control.share_calendar(team, ANN, "owner")
    world.drain()
    assert team in world.followed(account_id)
    assert world.kinds(sub_id).count(CALENDAR_ADDED) == 2  # one per time it was added


def test_a_new_policy_on_reconnect_is_reconciled_in_full(world: World) -> None:
    control = world.control
    primary = control.add_user(ANN)
    team = control.create_calendar(BOB, summary="Team")["id"]
    control.share_calendar(team, ANN, "reader")
    connected = world.account_service.connect(ANN, "bearer")
    world.drain()
    account_id = connected.account.id
    assert world.followed(account_id) == {primary, team}

    again = world.account_service.connect(ANN, "bearer", CalendarPolicy(calendars="owned"))
    assert not again.created and again.queued
    world.drain()
    assert world.followed(account_id) == {primary}
    assert world.members(account_id)[team]["status"] == "removed"
    # The same policy again changes nothing.
    world.account_service.connect(ANN, "bearer", CalendarPolicy(calendars="owned"))
    world.drain()
    assert world.followed(account_id) == {primary}
