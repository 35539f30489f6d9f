"""An account's whole story against the real emulators (issue 20's "what it must show"):
connect an account with three calendars, share a fourth with it, unshare one, revoke
the grant, reconnect. After each step the right calendars are followed, and in the
end every followed calendar's snapshots equal its listing, every feed holds each
membership change exactly once, and nothing made while the grant was revoked is lost.
"""

from __future__ import annotations

from typing import Any

from functions.model import CALENDAR_ADDED, CALENDAR_REMOVED
from tests.integration.accounts.conftest import ANN, BOB, World


def _check_feed_matches(world: World, sub_id: str, user: str, calendar_id: str) -> None:
    """Snapshots equal the listing; the feed's seq is dense and each event has one
    `created` before any update, and events the feed says exist are the listed ones."""
    assert world.live(sub_id) == world.listing(user, calendar_id)
    feed = world.feed(sub_id)
    assert [e.seq for e in feed] == list(range(1, len(feed) + 1))
    alive: set[str] = set()
    for entry in feed:
        if entry.kind == "created":
            assert entry.event_id not in alive, f"{entry.event_id} created twice"
            alive.add(entry.event_id)
        elif entry.kind == "deleted":
            alive.discard(entry.event_id)
    assert alive == set(world.listing(user, calendar_id))


def test_connect_share_unshare_revoke_reconnect(world: World) -> None:
    control = world.control
    primary = control.add_user(ANN)
    work = control.create_calendar(ANN, summary="Work")["id"]
    home = control.create_calendar(ANN, summary="Home")["id"]
    for calendar_id in (primary, work, home):
        world.insert(ANN, calendar_id, f"seed {calendar_id}")

    # Connect: the three calendars are followed, each feed opens with calendar_added.
    connected = world.account_service.connect(ANN, world.grant(ANN))
    assert connected.created and connected.queued
    world.drain()
    account_id = connected.account.id
    assert world.followed(account_id) == {primary, work, home}
    members = world.members(account_id)
    for calendar_id in (primary, work, home):
        kinds = world.kinds(members[calendar_id]["id"])
        assert kinds[0] == CALENDAR_ADDED and kinds.count(CALENDAR_ADDED) == 1
        assert kinds[1:] == ["created"]
        assert members[calendar_id]["credentials_ref"] == connected.account.credentials_ref
    channels = world.accounts.delivering_channels(account_id)
    assert [c.kind for c in channels] == ["calendar_list"] and channels[0].state == "active"

    # Bob shares a calendar: the list's push brings it in, with its events.
    shared = control.create_calendar(BOB, summary="Team")["id"]
    world.insert(BOB, shared, "team meeting")
    control.share_calendar(shared, ANN, "reader")
    answers = world.drain()
    assert any('"account_id"' in body for body, _ in answers), answers
    assert world.followed(account_id) == {primary, work, home, shared}
    shared_sub = world.members(account_id)[shared]["id"]
    assert world.kinds(shared_sub) == [CALENDAR_ADDED, "created"]

    # Bob unshares it: removed, its data and feed kept, nothing syncs any more.
    control.unshare_calendar(shared, ANN)
    world.drain()
    assert world.followed(account_id) == {primary, work, home}
    removed = world.members(account_id)[shared]
    assert removed["status"] == "removed" and removed["purge_at"] > removed["removed_at"]
    assert world.kinds(shared_sub) == [CALENDAR_ADDED, "created", CALENDAR_REMOVED]
    assert len(world.live(shared_sub)) == 1  # the events stay readable
    assert not world.subs.delivering_channels(shared_sub)

    # Ann revokes the grant: what syncs next fails for reauthorization, the account too.
    control.set_invalid_grant(ANN)
    during = world.insert(ANN, work, "made while revoked")
    world.drain()
    world.account_service.request_list_sync(account_id)
    world.drain()
    account = world.account_service.status(account_id)
    assert account.status == "error" and account.last_error_reason == "reauthorization_required"
    work_sub = world.members(account_id)[work]
    assert work_sub["status"] == "error"
    assert work_sub["last_error_reason"] == "reauthorization_required"

    # Ann connects again: one new credential for the account and every subscription,
    # the old one forgotten; everything resumes and catches up.
    old_ref = connected.account.credentials_ref
    control.set_invalid_grant(ANN, enabled=False)
    again = world.account_service.connect(ANN, world.grant(ANN))
    assert not again.created and again.account.id == account_id
    new_ref = again.account.credentials_ref
    assert new_ref != old_ref
    world.drain()
    assert world.account_service.status(account_id).status == "active"
    assert world.followed(account_id) == {primary, work, home}
    members = world.members(account_id)
    for calendar_id in (primary, work, home):
        sub = members[calendar_id]
        assert sub["status"] == "active" and sub["credentials_ref"] == new_ref
        _check_feed_matches(world, sub["id"], ANN, calendar_id)
        kinds = world.kinds(sub["id"])
        assert kinds.count(CALENDAR_ADDED) == 1 and CALENDAR_REMOVED not in kinds
    assert during in world.live(members[work]["id"])
    assert world.db.document(f"credentials/{old_ref.split(':', 1)[1]}").get().exists is False
    assert members[shared]["status"] == "removed"  # stays removed: still unshared

    # Shared again: the removed subscription comes back (same feed), in full.
    control.share_calendar(shared, ANN, "writer")
    world.insert(BOB, shared, "made while away")
    world.drain()
    back = world.members(account_id)[shared]
    assert back["id"] == shared_sub and back["status"] == "active"
    assert world.kinds(shared_sub)[:3] == [CALENDAR_ADDED, "created", CALENDAR_REMOVED]
    assert world.kinds(shared_sub)[3] == CALENDAR_ADDED
    _check_feed_matches(world, shared_sub, BOB, shared)


def test_nothing_is_doubled_when_the_list_is_listed_again(world: Any) -> None:
    """A list run replayed (the token lost, a full relisting) follows nothing twice."""
    control = world.control
    primary = control.add_user(ANN)
    other = control.create_calendar(ANN, summary="Other")["id"]
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    before = {cal: world.kinds(data["id"]) for cal, data in world.members(account_id).items()}
    assert set(before) == {primary, other}
    assert world.accounts.request_full_relisting(account_id, world.clock[0])
    world.account_service.request_list_sync(account_id)
    world.account_service.requeue(account_id, world.accounts.get(account_id)[0].requested_gen,
                                  "test")
    world.drain()
    after = {cal: world.kinds(data["id"]) for cal, data in world.members(account_id).items()}
    assert after == before
