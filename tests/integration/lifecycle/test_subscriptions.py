"""subscribe / unsubscribe / pause / resume / status on the real Firestore emulator.

Each liveness path of issue 10 (items 1, 2 and 6) has a test here that fails
on the code before the fix: the subscription identity, the first request
recorded with the subscription, "pending means a task is known to exist", and
conditional status transitions.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from functions.errors import (
    CalendarUnavailable,
    InvalidTransition,
    LeaseLost,
    ResourceMismatch,
    SubscriptionNotFound,
)
from functions.model import EventWrite
from tests.integration.lifecycle.conftest import Lifecycle


def test_subscribe_records_and_queues_the_first_sync_and_calls_no_google_api(
    lifecycle: Lifecycle,
) -> None:
    result = lifecycle.service.subscribe("cal-a", "alice", "bearer")
    sub_id = result.subscription.id
    assert result.created and result.queued
    assert lifecycle.queue.tasks == [(sub_id, 1, "request")]
    assert lifecycle.calendar.calls == []  # the first run opens the channel
    doc = lifecycle.db.document(f"subscriptions/{sub_id}").get().to_dict()
    assert doc["requested_gen"] == 1 and doc["queued_gen"] == 1
    assert doc["requested_at"] is not None and doc["last_synced_at"] is None
    status = lifecycle.service.status(sub_id)
    assert status.status == "active" and status.pending_requests == 1
    assert status.channel_id is None


def test_subscribing_the_same_calendar_and_owner_returns_the_existing_one(
    lifecycle: Lifecycle,
) -> None:
    first = lifecycle.service.subscribe("Cal-A", "Alice@Example.com", "bearer")
    again = lifecycle.service.subscribe(" cal-a ", "alice@example.com", "dwd")
    assert not again.created and again.subscription.id == first.subscription.id
    primary = lifecycle.service.subscribe("primary", "bob@example.com", "bearer")
    own = lifecycle.service.subscribe("bob@example.com", "bob@example.com", "bearer")
    assert own.subscription.id == primary.subscription.id and not own.created
    assert len(lifecycle.queue.tasks) == 2  # one first sync each, none for the repeats


def test_racing_subscribes_create_one_subscription(lifecycle: Lifecycle) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(6)

    def subscribe() -> None:
        barrier.wait()
        ids.append(lifecycle.service.subscribe("cal-race", "alice", "bearer").subscription.id)

    threads = [threading.Thread(target=subscribe) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 6 and len(set(ids)) == 1
    assert len(list(lifecycle.db.collection("subscriptions").stream())) == 1


def test_a_failed_enqueue_on_subscribe_leaves_a_request_the_sweep_serves(
    lifecycle: Lifecycle,
) -> None:
    lifecycle.queue.refuse = 1
    result = lifecycle.service.subscribe("cal-a", "alice", "bearer")
    assert result.created and not result.queued
    assert lifecycle.queue.tasks == []
    lifecycle.advance(minutes=3)
    assert lifecycle.renewer().run().swept == 1
    assert [(s, g) for s, g, _ in lifecycle.queue.tasks] == [(result.subscription.id, 1)]


def test_the_run_opens_the_channel_and_a_failed_watch_is_left_for_the_renewer(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    sub = lifecycle.store.get_subscription(sub_id)
    assert sub is not None
    lifecycle.calendar.fail_next = [CalendarUnavailable("watch 503")]
    assert not lifecycle.service.ensure_channel(sub)  # raises nothing: the sync goes on
    [pending] = lifecycle.subs.delivering_channels(sub_id)
    assert pending.state == "pending"
    doc = lifecycle.subs.channel_doc(pending.id)
    assert doc["renewal_attempts"] == 1 and "watch failed" in doc["last_error"]
    assert not lifecycle.service.ensure_channel(sub)  # backing off: no second watch
    assert [k for k, _ in lifecycle.calendar.calls] == ["watch"]
    lifecycle.served(sub_id)  # the run went on and listed without a channel
    lifecycle.queue.tasks.clear()
    lifecycle.advance(seconds=30)
    assert lifecycle.renewer().run().renewed == 0  # still backing off
    lifecycle.advance(seconds=40)
    report = lifecycle.renewer().run()
    assert report.renewed == 1
    states = lifecycle.channel_states(sub_id)
    assert states[pending.id] == "abandoned" and sorted(states.values()) == [
        "abandoned", "active"]
    # Nothing delivered while the watch failed: the new channel is followed by a sync.
    assert lifecycle.queue.tasks == [(sub_id, 2, "channel")]


def test_watch_response_must_match_a_resource_id_learnt_first(lifecycle: Lifecycle) -> None:
    sub_id, channel_id = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.subs.set_channel(channel_id, {"resource_id": "res-from-sync-message"})
    with pytest.raises(ResourceMismatch):
        lifecycle.subs.activate_channel(channel_id, sub_id, "res-cal-a",
                                        lifecycle.clock[0] + timedelta(days=1))


def test_channel_records_name_the_key_that_signed_them(lifecycle: Lifecycle) -> None:
    _, channel_id = lifecycle.subscribe_with_channel("cal-a")
    assert lifecycle.subs.channel_doc(channel_id)["token_key_id"] == "k"


def test_unsubscribe_fences_the_run_and_deletes_everything(lifecycle: Lifecycle) -> None:
    sub_id, _ = lifecycle.subscribe_with_channel("cal-a")
    now = lifecycle.clock[0]
    attempt = lifecycle.store.acquire_lease(sub_id, now, now + timedelta(minutes=2))
    assert attempt.lease is not None
    lifecycle.store.commit_page(attempt.lease, [EventWrite("e1", {"id": "e1", "_deleted": False})],
                                now, now + timedelta(minutes=2))
    deleted = lifecycle.service.unsubscribe(sub_id)
    assert deleted >= 3
    with pytest.raises(LeaseLost):  # the run in flight writes nothing more
        lifecycle.store.commit_page(attempt.lease,
                                    [EventWrite("e2", {"id": "e2", "_deleted": False})],
                                    now, now + timedelta(minutes=2))
    assert not lifecycle.db.document(f"subscriptions/{sub_id}").get().exists
    assert list(lifecycle.db.collection(f"subscriptions/{sub_id}/events").stream()) == []
    assert list(lifecycle.db.collection("channels").stream()) == []
    assert list(lifecycle.db.collection("subscription_keys").stream()) == []
    assert [k for k, _ in lifecycle.calendar.calls] == ["watch", "stop"]
    with pytest.raises(SubscriptionNotFound):
        lifecycle.service.unsubscribe(sub_id)
    again = lifecycle.service.subscribe("cal-a", "alice", "bearer")
    assert again.created and again.subscription.id != sub_id  # a new feed, new task names


def test_subscribing_while_the_old_one_is_deleting_is_refused(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.subs.begin_delete(sub_id, lifecycle.clock[0])  # an unsubscribe in progress
    with pytest.raises(InvalidTransition):
        lifecycle.service.subscribe("cal-a", "alice", "bearer")


def test_pause_stops_channels_and_resume_queues_a_sync_that_reopens_one(
    lifecycle: Lifecycle,
) -> None:
    sub_id, first = lifecycle.subscribe_with_channel("cal-a")
    lifecycle.served(sub_id)
    assert lifecycle.service.pause(sub_id)
    assert lifecycle.service.status(sub_id).status == "paused"
    assert lifecycle.channel_states(sub_id) == {first: "stopped"}
    assert not lifecycle.service.pause(sub_id)  # already paused: a no-op
    lifecycle.queue.tasks.clear()
    assert lifecycle.service.resume(sub_id)
    # The task that ran while paused ended INACTIVE: resume queues a new one.
    assert lifecycle.queue.tasks == [(sub_id, 2, "request")]
    assert lifecycle.service.status(sub_id).status == "active"
    sub = lifecycle.store.get_subscription(sub_id)
    assert sub is not None and lifecycle.service.ensure_channel(sub)
    states = lifecycle.channel_states(sub_id)
    assert states[first] == "stopped" and sorted(states.values()) == ["active", "stopped"]
    assert not lifecycle.service.resume(sub_id)  # already active: a no-op


def test_a_failed_enqueue_on_resume_is_repaired_by_the_sweep(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    lifecycle.service.pause(sub_id)
    lifecycle.queue.refuse, lifecycle.queue.tasks = 1, []
    assert lifecycle.service.resume(sub_id)
    assert lifecycle.queue.tasks == []
    lifecycle.advance(minutes=3)
    assert lifecycle.renewer().run().swept == 1
    assert [(s, g) for s, g, _ in lifecycle.queue.tasks] == [(sub_id, 2)]


def test_transitions_are_conditional_on_the_current_status(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.service.pause(sub_id)
    sub = lifecycle.store.get_subscription(sub_id)
    assert sub is not None
    assert not lifecycle.service.mark_error(sub, "late failure")  # a paused one stays paused
    assert lifecycle.service.status(sub_id).status == "paused"
    lifecycle.subs.begin_delete(sub_id, lifecycle.clock[0])
    with pytest.raises(InvalidTransition) as refused:
        lifecycle.service.resume(sub_id)
    assert refused.value.status == "deleting"
    with pytest.raises(InvalidTransition):
        lifecycle.service.pause(sub_id)
    assert lifecycle.service.status(sub_id).status == "deleting"
    with pytest.raises(SubscriptionNotFound):
        lifecycle.service.resume("nope")


def test_a_run_failing_after_a_pause_does_not_flip_it_to_error(lifecycle: Lifecycle) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    now = lifecycle.clock[0]
    attempt = lifecycle.store.acquire_lease(sub_id, now, now + timedelta(minutes=2))
    assert attempt.lease is not None
    lifecycle.service.pause(sub_id)
    lifecycle.store.release_lease(attempt.lease, now, error="CredentialsRejected: revoked")
    assert lifecycle.service.status(sub_id).status == "paused"


def test_new_credentials_resume_a_subscription_whose_grant_was_revoked(
    lifecycle: Lifecycle,
) -> None:
    sub_id = lifecycle.subscribe("cal-a")
    lifecycle.served(sub_id)
    sub = lifecycle.store.get_subscription(sub_id)
    assert sub is not None
    lifecycle.service.mark_error(sub, "CredentialsRejected: reauthorization_required: revoked")
    lifecycle.queue.tasks.clear()
    assert lifecycle.service.replace_credentials(sub_id, "oauth:new")
    status = lifecycle.service.status(sub_id)
    assert status.status == "active" and status.credentials_ref == "oauth:new"
    assert lifecycle.queue.tasks == [(sub_id, 2, "request")]
    other = lifecycle.subscribe("cal-b")
    lifecycle.service.mark_error(lifecycle.store.get_subscription(other), "calendar_not_found")
    assert not lifecycle.service.replace_credentials(other, "oauth:x")  # not a grant problem
    assert lifecycle.service.status(other).status == "error"
