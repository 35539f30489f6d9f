"""`DELETE` of an account finishes on its own through the real task path (a hooked
local stack, tests/faults/world.py): the request only marks the account `deleting`
and queues a task; the Cloud Tasks emulator dispatches it to the worker, whose
Firestore writes fail twice after going through (a deletion crashing midway, as a
worker dying after a write would leave it); Cloud Tasks retries it and the account,
its subscriptions and its list channel are all gone, with no list request or task
left. The safety net is far beyond the test; nothing runs the deletion by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from infra.calendar_emulator.control import EmulatorControl
from infra.calendar_emulator.testing import calendar_service
from tests.faults.in_process import calsync_app, wait_for
from tests.faults.world import FAR, World, hooked_stack

pytestmark = pytest.mark.slow
OWNER = "acct-delete@example.com"
INTERVALS = {
    "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": FAR,
    "CALSYNC_SWEEP_AFTER_SECONDS": FAR,  # the renewer's resumption is not what acts here
    "CALSYNC_OUTBOX_SWEEP_SECONDS": "15",
    "CALSYNC_MIN_SYNC_INTERVAL_SECONDS": "0.5",
    "CALSYNC_LEASE_SECONDS": "5",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with hooked_stack(tmp_path, "calsync-account-deletion", INTERVALS) as world:
        yield world


def test_a_deletion_that_crashes_midway_finishes_through_its_task(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    with calsync_app(world, monkeypatch) as app:
        _story(world, app)


def _story(world: World, app: Any) -> None:
    settings = app.cli_settings()
    accounts, db = app.account_service(settings), app.firestore_client(settings)
    base = world.env["CALENDAR_API_ENDPOINT"].split("/calendar/v3")[0]
    control = EmulatorControl(base)
    control.add_user(OWNER)
    mine = calendar_service(base, OWNER)
    for n in range(3):
        mine.calendars().insert(body={"summary": f"own {n}"}).execute()
    account_id = accounts.connect(OWNER, "bearer").account.id

    def members() -> list[str]:
        return [s.id for s in db.collection("subscriptions").where(
            filter=FieldFilter("account_id", "==", account_id)).stream()]

    def channels() -> list[str]:
        return [c.id for c in db.collection("channels").where(
            filter=FieldFilter("account_id", "==", account_id)).stream()]

    wait_for("four calendars followed, the queue drained",
             lambda: len(members()) == 4 and not world.queued_tasks())
    list_channel = channels()
    assert list_channel

    budget = world.budget("firestore_error", "sync_worker", count=2, after=True)
    assert accounts.delete(account_id)  # what DELETE /v1/accounts/{id} calls
    state = (db.document(f"accounts/{account_id}").get().to_dict() or {}).get("status")
    assert state == "deleting"
    wait_for("the account gone", lambda: not db.document(f"accounts/{account_id}").get().exists,
             90)
    wait_for("its subscriptions gone", lambda: members() == [], 90)
    acted = world.journal("firestore_error", budget=budget)
    assert len(acted) == 2, acted  # the deletion failed twice after a write, then finished
    assert channels() == []
    on_google = {c["id"]: c for c in control.channels()}
    assert all(on_google[c].get("stopped") for c in list_channel if c in on_google)
    wait_for("the queue drained", lambda: not world.queued_tasks(), 30)
