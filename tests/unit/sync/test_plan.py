"""Pure planning logic: diffs, page plans, series deletion, chunking."""

from __future__ import annotations

from functions.model import EventWrite
from functions.sync.diff import diff_fields
from functions.sync.engine import _chunks
from functions.sync.plan import decide, plan_page, plan_reconciliation


def ev(event_id: str, etag: str, **fields: object) -> dict:
    return {"id": event_id, "etag": etag, "status": "confirmed", **fields}


def snap(event_id: str, etag: str, deleted: bool = False, **fields: object) -> dict:
    return {**ev(event_id, etag, **fields), "_deleted": deleted, "_seq": 7}


def cancelled(event_id: str, etag: str, **fields: object) -> dict:
    return {"id": event_id, "etag": etag, "status": "cancelled", **fields}


def test_diff_reports_non_volatile_top_level_fields_only():
    before = {"summary": "a", "etag": "1", "updated": "x", "sequence": 0, "_seq": 3, "loc": 1}
    after = {"summary": "b", "etag": "2", "updated": "y", "sequence": 1, "_seq": 4}
    assert diff_fields(before, after) == {
        "summary": {"before": "a", "after": "b"}, "loc": {"before": 1, "after": None}}
    assert diff_fields(None, {"summary": "s", "etag": "1"}) == {
        "summary": {"before": None, "after": "s"}}


def test_created_updated_deleted_and_unchanged():
    created = decide("a", None, {**ev("a", "1", summary="s"), "_deleted": False},
                     first_sync=True)
    assert created.change.kind == "created"
    assert created.change.fields["summary"] == {"before": None, "after": "s"}
    assert decide("a", snap("a", "1"), {**ev("a", "1"), "_deleted": False},
                  first_sync=False) is None
    updated = decide("a", snap("a", "1", summary="s"),
                     {**ev("a", "2", summary="t"), "_deleted": False}, first_sync=False)
    assert updated.change.kind == "updated" and list(updated.change.fields) == ["summary"]
    assert updated.snapshot["_seq"] == 7
    volatile = decide("a", snap("a", "1", summary="s", sequence=1),
                      {**ev("a", "2", summary="s", sequence=2), "_deleted": False},
                      first_sync=False)
    assert volatile is not None and volatile.change is None
    deleted = decide("a", snap("a", "1", summary="s"), {**cancelled("a", "2"), "_deleted": True},
                     first_sync=False)
    assert deleted.change.kind == "deleted"
    assert deleted.change.fields["summary"] == {"before": "s", "after": None}
    again = decide("a", snap("a", "1", deleted=True), {**ev("a", "3"), "_deleted": False},
                   first_sync=False)
    assert again.change.kind == "created"


def test_cancelled_items_never_seen():
    plain = {**cancelled("a", "1"), "_deleted": True}
    assert decide("a", None, plain, first_sync=False) is None
    instance = {**cancelled("s_1", "1", recurringEventId="s"), "_deleted": True}
    first = decide("s_1", None, instance, first_sync=True)
    assert first is not None and first.change is None
    later = decide("s_1", None, instance, first_sync=False)
    assert later.change.kind == "deleted" and later.change.recurring_event_id == "s"


def test_series_deletion_gives_one_entry_per_id():
    stored = {
        "s": snap("s", "1", recurrence=["RRULE:FREQ=DAILY"]),
        "s_1": snap("s_1", "1", recurringEventId="s", summary="moved"),
        "s_2": snap("s_2", "1", recurringEventId="s", deleted=True),
    }
    items = [cancelled("s", "2"), cancelled("s_1", "2", recurringEventId="s")]
    writes = plan_page(items, stored, {"s": ["s_1", "s_2"]}, first_sync=False)
    kinds = {w.event_id: w.change.kind if w.change else None for w in writes}
    assert kinds == {"s": "deleted", "s_1": "deleted"}


def test_same_id_twice_on_a_page_is_one_entry():
    items = [ev("a", "2", summary="x"), ev("a", "3", summary="y")]
    writes = plan_page(items, {"a": snap("a", "1", summary="w")}, {}, first_sync=False)
    assert len(writes) == 1
    assert writes[0].change.fields["summary"] == {"before": "w", "after": "y"}


def test_reconciliation_deletes_live_snapshots_only():
    writes = plan_reconciliation({"a": snap("a", "1"), "b": snap("b", "1", deleted=True)})
    assert [(w.event_id, w.change.kind) for w in writes] == [("a", "deleted")]
    assert writes[0].snapshot["_deleted"] is True


def test_chunks_respect_the_write_limit():
    writes = [EventWrite(str(i), {}, None if i % 3 else object()) for i in range(100)]  # type: ignore[arg-type]
    chunks = list(_chunks(writes, 9))
    assert [w for c in chunks for w in c] == writes
    assert all(sum(w.write_count for w in c) <= 9 for c in chunks)
