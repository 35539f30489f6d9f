"""A list run that lost its lease between subscribe and follow takes the subscription
it created down (an orphan nobody would own); if the new lease holder follows that
same subscription while the clean-up is under way, the clean-up must not delete a
followed subscription, and the calendar must end up followed (real Firestore and
Calendar emulators)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.errors import InvalidTransition
from functions.lifecycle.account_sync import AccountSync, AccountSyncSettings
from functions.model import AccountLease
from tests.integration.accounts.conftest import ANN, BOB, World


def test_an_orphan_clean_up_racing_the_new_lease_holders_follow(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    control = world.control
    control.add_user(ANN)
    account_id = world.account_service.connect(ANN, world.grant(ANN)).account.id
    world.drain()
    shared = control.create_calendar(BOB, summary="Shared")["id"]
    world.insert(BOB, shared, "before it was shared")
    control.share_calendar(shared, ANN, "reader")
    # Run A holds a 1 s lease; B takes over once it has passed.
    run_a = AccountSync(world.accounts, world.calendar_list, world.account_service,
                        world.service, world.queue,
                        AccountSyncSettings(lease_seconds=1.0, min_sync_interval=0.01))
    follow, begin_delete = world.accounts.follow, world.subs.begin_delete
    taken: list[AccountLease] = []
    acted: list[str] = []

    def lease_lost_first(lease: AccountLease, sub_id: str, *args: Any) -> Any:
        if not taken:  # A's follow: B has taken the lease over meanwhile
            now = datetime.now(UTC) + timedelta(seconds=1.5)
            attempt = world.accounts.acquire_lease(account_id, now, now + timedelta(seconds=1))
            assert attempt.lease is not None, attempt
            taken.append(attempt.lease)
        return follow(lease, sub_id, *args)

    def b_follows_first(sub_id: str, now: datetime, *args: Any, **kwargs: Any) -> Any:
        # A's clean-up is under way; B's run follows the same calendar right now.
        lease_b = taken[0]
        try:
            follow(lease_b, sub_id, {"account_id": account_id, "calendar_id": shared,
                                     "access_role": "reader"}, now)
            acted.append("followed")
        except InvalidTransition:
            acted.append("refused")  # B's run answers transient: its task is retried
        world.accounts.release_lease(lease_b, datetime.now(UTC) + timedelta(seconds=1.5))
        return begin_delete(sub_id, now, *args, **kwargs)

    monkeypatch.setattr(world.accounts, "follow", lease_lost_first)
    monkeypatch.setattr(world.subs, "begin_delete", b_follows_first)
    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()
    assert run_a.run(account_id).outcome.value == "lease_lost"
    assert acted, "the race never happened"
    monkeypatch.undo()
    # A followed subscription is never taken down by the clean-up: B's run would
    # commit its listing past the calendar and no incremental run would list it again.
    found = world.accounts.subscription_for(shared, ANN)
    if acted == ["followed"]:
        assert found is not None, "the followed subscription was deleted by the clean-up"
        assert found[1].get("status") == "active" and found[1].get("account_seq"), found[1]
    else:  # B's follow was refused (the clean-up had begun): nothing half-followed
        assert found is None or found[1].get("account_seq") is None, found[1]
    # Whatever happened, the calendar is followed in the end, by a live subscription,
    # once the tasks left (B's retry included) have run.
    world.account_service.request_list_sync(account_id)
    world.drain()
    members = world.members(account_id)
    assert shared in members, members
    assert members[shared]["status"] == "active", members[shared]
    assert world.subs.get(members[shared]["id"]) is not None
    subs = [d.to_dict() for d in world.db.collection("subscriptions").stream()]
    assert sorted(str(s["calendar_id"]) for s in subs) == sorted(members), subs
