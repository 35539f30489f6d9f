"""A new authorization code replaces the account's refresh token while a list run
that read the old one subscribes a calendar (real Firestore and Calendar emulators):
the old token is forgotten once nothing uses it, the new one stays, and the new
subscription uses the new one."""

from __future__ import annotations

from typing import Any

import pytest

from functions.model import AccountLease
from tests.integration.accounts.conftest import ANN, BOB, World


def _stored(world: World, ref: str) -> bool:
    return bool(world.db.document(f"credentials/{ref.split(':', 1)[1]}").get().exists)


def test_a_token_replaced_while_a_run_subscribes_is_forgotten(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    control = world.control
    control.add_user(ANN)
    old = world.grant(ANN)
    account_id = world.account_service.connect(ANN, old).account.id
    world.drain()
    shared = control.create_calendar(BOB, summary="Shared")["id"]
    control.share_calendar(shared, ANN, "reader")
    new = world.grant(ANN)
    follow = world.accounts.follow
    replaced: list[bool] = []

    def reconnected_meanwhile(lease: AccountLease, sub_id: str, *args: Any) -> Any:
        # The run read the old token, subscribed with it; the owner connects again now.
        if not replaced:
            assert world.subs.get(sub_id) is not None
            world.account_service.reauthorize(account_id, new)
            replaced.append(True)
        return follow(lease, sub_id, *args)

    monkeypatch.setattr(world.accounts, "follow", reconnected_meanwhile)
    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()
    assert world.account_sync.run(account_id).added == 1
    assert replaced  # the race happened
    monkeypatch.undo()
    world.drain()
    members = world.members(account_id)
    assert {data["credentials_ref"] for data in members.values()} == {new}
    assert _stored(world, new)
    assert not _stored(world, old), "the replaced refresh token is still stored"
