"""Following a calendar is subscribe-then-follow (real Firestore and Calendar emulators):
a list run whose lease is lost between the two leaves no subscription nobody owns, and a
new subscription's first sync runs only once it is followed, so `calendar_added` is the
first entry of its feed."""

from __future__ import annotations

from typing import Any

import pytest

from functions.model import CALENDAR_ADDED, AccountLease
from tests.integration.accounts.conftest import ANN, BOB, World


def run_queued_syncs(world: World) -> None:
    """Cloud Tasks delivering the subscriptions' sync tasks right now (the list run's own
    task, and any other, stay queued)."""
    kept = []
    while (task := world.queue.take()) is not None:
        if task[0].startswith("sync-"):
            world.worker.handle(task[1])
        else:
            kept.append(task)
    world.queue.tasks.extend(kept)


def test_a_deletion_between_subscribe_and_follow_leaves_no_orphan(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    control = world.control
    control.add_user(ANN)
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    shared = control.create_calendar(BOB, summary="Shared")["id"]
    world.insert(BOB, shared, "before it was shared")
    control.share_calendar(shared, ANN, "reader")
    follow = world.accounts.follow

    def deleted_meanwhile(lease: AccountLease, sub_id: str, *args: Any) -> Any:
        # `DELETE /v1/accounts/X` arrives between the run's subscribe and its follow.
        world.accounts.begin_delete(account_id, world.clock[0])
        return follow(lease, sub_id, *args)

    monkeypatch.setattr(world.accounts, "follow", deleted_meanwhile)
    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()
    report = world.account_sync.run(account_id)
    assert report.outcome.value == "lease_lost", report
    monkeypatch.undo()
    world.account_service.finish_delete(account_id)  # the rest of the DELETE
    world.drain()
    assert world.accounts.subscription_for(shared, ANN) is None
    left = [d.to_dict() for d in world.db.collection("subscriptions").stream()]
    assert left == [], left


def test_calendar_added_comes_before_the_first_sync_of_a_new_subscription(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    control = world.control
    control.add_user(ANN)
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    shared = control.create_calendar(BOB, summary="Shared")["id"]
    world.insert(BOB, shared, "before it was shared")
    control.share_calendar(shared, ANN, "reader")
    follow = world.accounts.follow

    def syncs_first(lease: AccountLease, sub_id: str, *args: Any) -> Any:
        run_queued_syncs(world)  # whatever the subscribe queued runs before the follow
        return follow(lease, sub_id, *args)

    monkeypatch.setattr(world.accounts, "follow", syncs_first)
    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()
    assert world.account_sync.run(account_id).added == 1
    monkeypatch.undo()
    world.drain()
    sub_id = world.members(account_id)[shared]["id"]
    assert world.kinds(sub_id) == [CALENDAR_ADDED, "created"]
    assert world.live(sub_id).keys() == world.listing(ANN, shared).keys()


def test_a_follow_retried_after_a_failure_still_leads_the_feed(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first attempt created the subscription and failed to follow it; the retried
    run finds it existing (its first sync still unqueued) and queues a run for it only
    once it follows it (the run that publishes `calendar_added` serves the first sync),
    without waiting for the sweep."""
    from functions.errors import StoreUnavailable

    control = world.control
    control.add_user(ANN)
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    shared = control.create_calendar(BOB, summary="Shared")["id"]
    world.insert(BOB, shared, "before it was shared")
    control.share_calendar(shared, ANN, "reader")
    follow = world.accounts.follow
    attempts: list[str] = []

    def flaky_then_syncs_first(lease: AccountLease, sub_id: str, *args: Any) -> Any:
        attempts.append(sub_id)
        if len(attempts) == 1:
            raise StoreUnavailable("injected: the follow's commit failed")
        run_queued_syncs(world)  # whatever is queued for it runs before the follow
        return follow(lease, sub_id, *args)

    monkeypatch.setattr(world.accounts, "follow", flaky_then_syncs_first)
    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()
    assert world.account_sync.run(account_id).outcome.value == "transient"
    assert world.account_sync.run(account_id).added == 1  # the task's retry
    monkeypatch.undo()
    assert any(name.startswith("sync-") for name in world.queue.names[-3:]), world.queue.names
    world.drain()
    sub_id = world.members(account_id)[shared]["id"]
    assert world.kinds(sub_id) == [CALENDAR_ADDED, "created"]
