"""subscribe / unsubscribe / pause / resume / status on the real Firestore emulator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.channel_store import ResourceMismatch
from functions.model import EventWrite
from functions.subscriptions import SubscriptionNotFound
from tests.integration.lifecycle.conftest import Lifecycle


def test_subscribe_opens_an_active_channel_and_queues_the_first_sync(
    lifecycle: Lifecycle,
) -> None:
    sub, opened = lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    channel = lifecycle.subs.channels_of("sub-a")[0]
    assert channel.id == opened.channel_id and channel.state == "active"
    assert channel.resource_id == "res-cal-a"
    assert lifecycle.queue.tasks == [("sub-a", 1, "request")]
    status = lifecycle.service.status("sub-a")
    assert status.status == "active" and status.channel_id == opened.channel_id
    assert status.pending_requests == 1


def test_watch_response_must_match_a_resource_id_learnt_first(lifecycle: Lifecycle) -> None:
    sub, opened = lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    lifecycle.subs.set_channel(opened.channel_id, {"resource_id": "res-from-sync-message"})
    with pytest.raises(ResourceMismatch):
        lifecycle.subs.activate_channel(opened.channel_id, "sub-a", "res-cal-a",
                                        lifecycle.clock[0] + timedelta(days=1))


def test_unsubscribe_fences_the_run_and_deletes_everything(lifecycle: Lifecycle) -> None:
    lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    now = lifecycle.clock[0]
    attempt = lifecycle.store.acquire_lease("sub-a", now, now + timedelta(minutes=2))
    assert attempt.lease is not None
    lifecycle.store.commit_page(attempt.lease, [EventWrite("e1", {"id": "e1", "_deleted": False})],
                                now, now + timedelta(minutes=2))
    deleted = lifecycle.service.unsubscribe("sub-a")
    assert deleted >= 3
    from functions.errors import LeaseLost

    with pytest.raises(LeaseLost):  # the run in flight writes nothing more
        lifecycle.store.commit_page(attempt.lease,
                                    [EventWrite("e2", {"id": "e2", "_deleted": False})],
                                    now, now + timedelta(minutes=2))
    assert not lifecycle.db.document("subscriptions/sub-a").get().exists
    assert list(lifecycle.db.collection("subscriptions/sub-a/events").stream()) == []
    assert list(lifecycle.db.collection("channels").stream()) == []
    assert [k for k, _ in lifecycle.calendar.calls] == ["watch", "stop"]
    with pytest.raises(SubscriptionNotFound):
        lifecycle.service.unsubscribe("sub-a")


def test_pause_stops_channels_and_resume_opens_a_new_one(lifecycle: Lifecycle) -> None:
    _, first = lifecycle.service.subscribe("cal-a", "alice", "bearer", sub_id="sub-a")
    lifecycle.service.pause("sub-a")
    assert lifecycle.service.status("sub-a").status == "paused"
    assert lifecycle.channel_states("sub-a") == {first.channel_id: "stopped"}
    second = lifecycle.service.resume("sub-a")
    states = lifecycle.channel_states("sub-a")
    assert states[second.channel_id] == "active" and states[first.channel_id] == "stopped"
    assert lifecycle.service.status("sub-a").status == "active"
