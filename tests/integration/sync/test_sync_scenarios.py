"""The sync engine against the real Firestore and Calendar emulators, through the real clients.

Pages are forced small (page_size 5) so every scenario spans several pages.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.sync.engine import Outcome

from .harness import Harness, kinds


@pytest.fixture
def world(firestore_db: Any, calendar: Any) -> Harness:
    return Harness(firestore_db, calendar, "alice@example.com")


def test_first_sync_creates_every_event_over_several_pages(world: Harness):
    ids = [world.insert(f"event {i}", day=i)["id"] for i in range(12)]
    report = world.sync()
    assert report.outcome is Outcome.SYNCED and report.mode == "full"
    assert report.pages >= 3
    entries = world.check()
    assert sorted(kinds(entries)) == sorted(("created", i) for i in ids)
    assert all(e.fields["summary"]["before"] is None for e in entries)
    state = world.store.get_writer_state(world.sub.id)
    assert state["sync_token"] and state["lease_until"] is None


def test_incremental_sync_reports_creates_updates_and_deletes(world: Harness):
    ids = [world.insert(f"event {i}", day=i)["id"] for i in range(8)]
    world.sync()
    before = len(world.check())
    created = [world.insert(f"new {i}", day=20 + i)["id"] for i in range(6)]
    world.patch(ids[0], summary="renamed")
    world.patch(ids[1], location="Room 1")
    world.patch(ids[2], **_day(ids, 9))  # moved in time
    world.delete(ids[3])
    world.delete(created[0])
    report = world.sync()
    assert report.outcome is Outcome.SYNCED and report.mode == "incremental"
    assert report.pages >= 2
    entries = world.check()[before:]
    by_id = {e.event_id: e for e in entries}
    assert len(by_id) == len(entries), "one entry per change"
    assert by_id[ids[0]].kind == "updated"
    assert by_id[ids[0]].fields == {"summary": {"before": "event 0", "after": "renamed"}}
    assert by_id[ids[1]].fields == {"location": {"before": None, "after": "Room 1"}}
    assert set(by_id[ids[2]].fields) == {"start", "end"}
    assert by_id[ids[3]].kind == "deleted" and by_id[ids[3]].fields["summary"]["after"] is None
    assert {e.event_id for e in entries if e.kind == "created"} == set(created[1:])
    assert created[0] not in by_id  # created and deleted between two syncs: nothing to report
    # Nothing changed: a second incremental sync writes nothing.
    assert world.sync().entries == {"created": 0, "updated": 0, "deleted": 0}
    assert len(world.feed()) == before + len(entries)


def test_recurring_series_edits_instances_and_series_deletion(world: Harness):
    series = world.insert_series("standup", count=6)
    other = world.insert("lunch", day=3)
    world.sync()
    instances = world.instances(series["id"])
    assert len(instances) == 6
    start = len(world.check())
    # One instance moved and renamed, one cancelled, and the series renamed.
    world.patch(instances[1]["id"], summary="standup (late)")
    world.delete(instances[2]["id"])
    world.patch(series["id"], description="daily")
    world.sync()
    entries = world.check()[start:]
    by_id = {e.event_id: e for e in entries}
    assert by_id[series["id"]].kind == "updated"
    assert by_id[series["id"]].fields == {"description": {"before": None, "after": "daily"}}
    assert by_id[instances[1]["id"]].kind == "created"
    assert by_id[instances[1]["id"]].recurring_event_id == series["id"]
    assert by_id[instances[2]["id"]].kind == "deleted"
    assert by_id[instances[2]["id"]].recurring_event_id == series["id"]
    start += len(entries)
    # Deleting the series deletes its stored exception too: one entry each.
    world.delete(series["id"])
    world.sync()
    entries = world.check()[start:]
    assert sorted(kinds(entries)) == sorted([("deleted", series["id"]),
                                             ("deleted", instances[1]["id"])])
    assert other["id"] in world.live()


def test_series_deletion_and_cancellations_on_one_page_give_one_entry_each(world: Harness):
    world.page_size = 50
    series = world.insert_series("weekly", count=4)
    world.sync()
    instances = world.instances(series["id"])
    world.patch(instances[0]["id"], summary="special")
    world.sync()
    start = len(world.check())
    world.delete(instances[0]["id"])
    world.delete(series["id"])
    world.sync()
    entries = world.check()[start:]
    assert sorted(kinds(entries)) == sorted([("deleted", series["id"]),
                                             ("deleted", instances[0]["id"])])


def _day(ids: list[str], day: int) -> dict[str, Any]:
    from .harness import _times

    return _times(day)
