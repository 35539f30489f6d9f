"""A followed calendar in `error` for a reason the list can clear (access lost, not
found, a revoked grant) resumes when the calendar list shows it readable again, through
the incremental path (its entry changed) and the full one (a relisting), on the real
Firestore and Calendar emulators."""

from __future__ import annotations

from functions.model import CALENDAR_ADDED
from tests.integration.accounts.conftest import ANN, BOB, World


def broken(world: World, sub_id: str) -> None:
    sub = world.subs.get(sub_id)
    assert sub is not None
    world.service.mark_error(sub[0], "calendar_access_lost: 404 while it was unshared",
                             "calendar_access_lost")
    assert world.subs.get(sub_id)[1]["status"] == "error"  # type: ignore[index]


def test_a_followed_calendar_in_error_resumes_when_the_list_shows_it(world: World) -> None:
    control = world.control
    control.add_user(ANN)
    shared = control.create_calendar(BOB, summary="Shared")["id"]
    control.share_calendar(shared, ANN, "reader")
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    sub_id = world.members(account_id)[shared]["id"]

    # Incremental: the entry changes (its role) and the list shows it readable.
    broken(world, sub_id)
    control.share_calendar(shared, ANN, "writer")
    world.drain()
    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()
    assert world.account_sync.run(account_id).mode == "incremental"
    world.drain()
    assert world.members(account_id)[shared]["status"] == "active"

    # Full: a relisting (the list's token expired) holds it readable.
    broken(world, sub_id)
    control.invalidate_calendar_list_tokens(ANN)
    world.account_service.request_list_sync(account_id)
    world.queue.tasks.clear()
    assert world.account_sync.run(account_id).mode == "full_after_410"
    world.drain()
    assert world.members(account_id)[shared]["status"] == "active"
    inserted = world.insert(BOB, shared, "after it resumed")
    world.drain()
    assert inserted in world.live(sub_id)
    assert world.kinds(sub_id).count(CALENDAR_ADDED) == 1  # followed once, all along
