"""What an account owns and how it goes (real Firestore and Calendar emulators): a
subscription made by hand is adopted (its own credential forgotten, its error for a
revoked grant resumed); a followed subscription cannot be unsubscribed by hand; a
removed one is purged by the renewer once its retention ended, the account's shared
credential staying; deleting the account takes down its channel, subscriptions and
credential, and an interrupted deletion is finished by the renewer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.errors import AccountNotFound, InvalidTransition
from functions.model import CALENDAR_ADDED
from tests.integration.accounts.conftest import ANN, BOB, World


def test_a_subscription_made_by_hand_is_adopted(world: World) -> None:
    control = world.control
    primary = control.add_user(ANN)
    own_ref = world.grant(ANN)
    by_hand = world.service.subscribe("primary", ANN, own_ref).subscription
    world.drain()
    world.service.mark_error(by_hand, "reauthorization_required: revoked",
                             "reauthorization_required")
    # No events on the primary yet: only the lifecycle entry saying why it stopped.
    assert world.kinds(by_hand.id) == ["reauthorization_required"]

    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    members = world.members(connected.account.id)
    assert set(members) == {"primary"}  # the same (calendar, owner): one subscription
    adopted = members["primary"]
    assert adopted["id"] == by_hand.id and adopted["status"] == "active"
    assert adopted["credentials_ref"] == connected.account.credentials_ref
    # Adopted, then resumed with the account's credential: `recovered` follows.
    assert world.kinds(by_hand.id) == ["reauthorization_required", CALENDAR_ADDED, "recovered"]
    assert not world.db.document(f"credentials/{own_ref.split(':', 1)[1]}").get().exists
    assert primary == ANN


def test_a_followed_subscription_is_the_accounts_to_take_down(world: World) -> None:
    world.control.add_user(ANN)
    account_id = world.account_service.connect(ANN, "bearer").account.id
    world.drain()
    sub_id = world.members(account_id)["ann@example.com"]["id"]
    with pytest.raises(InvalidTransition, match="exclude"):
        world.service.unsubscribe(sub_id)
    assert world.subs.get(sub_id) is not None


def test_a_removed_subscription_is_purged_after_its_retention(world: World) -> None:
    control = world.control
    control.add_user(ANN)
    team = control.create_calendar(BOB, summary="Team")["id"]
    control.share_calendar(team, ANN, "reader")
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    sub_id = world.members(account_id)[team]["id"]
    control.unshare_calendar(team, ANN)
    world.drain()
    assert world.members(account_id)[team]["status"] == "removed"

    world.clock[0] += timedelta(days=29)
    assert world.renewer().run().purged == 0  # kept for the retention period
    assert world.subs.get(sub_id) is not None
    world.clock[0] += timedelta(days=2)
    assert world.renewer().run().purged == 1
    assert world.subs.get(sub_id) is None
    assert world.feed(sub_id) == []
    # The account's credential is shared: the purge left it.
    ref = connected.account.credentials_ref
    assert world.db.document(f"credentials/{ref.split(':', 1)[1]}").get().exists
    # Shared once more: a new subscription, its own feed.
    control.share_calendar(team, ANN, "reader")
    world.drain()
    again = world.members(account_id)[team]
    assert again["id"] != sub_id and world.kinds(again["id"])[0] == CALENDAR_ADDED


def test_deleting_an_account_takes_everything_down(world: World) -> None:
    control = world.control
    control.add_user(ANN)
    extra = control.create_calendar(ANN, summary="Extra")["id"]
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    subs = [data["id"] for data in world.members(account_id).values()]
    channel = world.list_channel(account_id)
    assert len(subs) == 2 and extra in world.followed(account_id)

    world.account_service.delete(account_id)
    assert world.account_service.status(account_id).status == "deleting"
    world.drain()  # the task the request queued takes it down
    with pytest.raises(AccountNotFound):
        world.account_service.status(account_id)
    assert all(world.subs.get(s) is None for s in subs)
    assert world.accounts.channels_of(account_id) == []
    ref = connected.account.credentials_ref
    assert not world.db.document(f"credentials/{ref.split(':', 1)[1]}").get().exists
    assert {c["id"]: c for c in control.channels()}[channel.id]["stopped"]
    # The owner can connect again: a new account.
    assert world.account_service.connect(ANN, "bearer").account.id != account_id


def test_an_interrupted_deletion_is_finished_by_the_renewer(world: World) -> None:
    world.control.add_user(ANN)
    account_id = world.account_service.connect(ANN, "bearer").account.id
    world.drain()
    world.accounts.begin_delete(account_id, world.clock[0])  # then the caller died
    assert world.account_service.status(account_id).status == "deleting"
    with pytest.raises(InvalidTransition):
        world.account_service.connect(ANN, "bearer")
    world.clock[0] += timedelta(minutes=5)
    assert world.renewer().run().deletions_resumed == 1
    with pytest.raises(AccountNotFound):
        world.account_service.status(account_id)
    assert world.members(account_id) == {}


def test_a_list_request_left_without_a_task_is_swept(world: World) -> None:
    world.control.add_user(ANN)
    world.queue.refuse = 1  # the first listing's enqueue fails
    connected = world.account_service.connect(ANN, "bearer")
    assert connected.created and not connected.queued
    assert world.queue.tasks == []
    world.clock[0] += timedelta(minutes=3)
    report = world.renewer().run()
    assert report.swept == 1
    world.drain()
    assert world.followed(connected.account.id) == {"ann@example.com"}
