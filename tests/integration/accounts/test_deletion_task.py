"""`DELETE /v1/accounts/{id}` only marks the account `deleting` and queues a task; the
worker's calendar-list task path takes it down (channel, subscriptions, credential,
the account), retried when it crashes midway, and the renewer finishes one whose
task could not be queued (real Firestore and Calendar emulators, the real worker)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.errors import AccountNotFound
from tests.integration.accounts.conftest import ANN, World, later


def _connected(world: World) -> tuple[str, list[str], Any]:
    world.control.add_user(ANN)
    world.control.create_calendar(ANN, summary="Extra")
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    subs = [data["id"] for data in world.members(account_id).values()]
    assert len(subs) == 2
    return account_id, subs, world.list_channel(account_id)


def _gone(world: World, account_id: str, subs: list[str], channel: Any) -> None:
    with pytest.raises(AccountNotFound):
        world.account_service.status(account_id)
    assert all(world.subs.get(s) is None for s in subs)
    assert world.accounts.channels_of(account_id) == []
    assert {c["id"]: c for c in world.control.channels()}[channel.id]["stopped"]


def test_the_request_marks_it_deleting_and_a_task_takes_it_down(world: World) -> None:
    account_id, subs, channel = _connected(world)
    world.account_service.delete(account_id)
    # Nothing was taken down inside the request: it only fenced and queued.
    assert world.account_service.status(account_id).status == "deleting"
    assert all(world.subs.get(s) is not None for s in subs)
    assert [json.loads(body) for _, body, _ in world.queue.tasks] == [
        {"account_id": account_id}]
    world.drain()
    _gone(world, account_id, subs, channel)


def test_a_deletion_task_that_crashes_midway_is_retried_to_the_end(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    account_id, subs, channel = _connected(world)
    real = world.service.unsubscribe
    calls: list[str] = []

    def crash_on_the_second(sub_id: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(sub_id)
        if len(calls) == 2:
            raise RuntimeError("worker died mid-deletion (injected)")
        return real(sub_id, *args, **kwargs)

    monkeypatch.setattr(world.service, "unsubscribe", crash_on_the_second)
    world.account_service.delete(account_id)
    answers = world.drain()
    # The fault acted: one delivery answered 500 after one member was gone, and
    # the retried task finished the rest.
    assert [status for _, status in answers].count(500) == 1
    assert len(calls) >= 3
    _gone(world, account_id, subs, channel)


def test_a_deletion_whose_task_was_not_queued_is_finished_by_the_renewer(
        world: World) -> None:
    account_id, subs, channel = _connected(world)
    world.queue.refuse = 1  # the deletion's enqueue fails
    world.account_service.delete(account_id)
    assert world.queue.refuse == 0  # the refusal acted
    assert world.account_service.status(account_id).status == "deleting"
    assert world.drain() == []
    later(world, minutes=5)
    assert world.renewer().run().deletions_resumed == 1
    _gone(world, account_id, subs, channel)
