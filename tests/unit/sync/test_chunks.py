"""How a page's writes are cut into commits: by count and by estimated bytes."""

from __future__ import annotations

from functions.adapters.firestore.store import write_bytes as _write_bytes
from functions.model import ChangeDraft, EventWrite
from functions.sync.engine import MAX_COMMIT_BYTES, _chunks


def _write(event_id: str, size: int = 10, change: bool = True) -> EventWrite:
    draft = ChangeDraft("created", event_id, {"description": {
        "before": None, "after": "d" * size}}, "1") if change else None
    return EventWrite(event_id, {"id": event_id, "description": "d" * size}, draft)


def _ids(chunks: list) -> list[list[str]]:
    return [[w.event_id for w in chunk] for chunk in chunks]


def test_count_limit_counts_snapshots_and_entries():
    writes = [_write("a"), _write("b", change=False), _write("c"), _write("d")]
    assert _ids(list(_chunks(writes, 4))) == [["a", "b"], ["c", "d"]]
    assert _ids(list(_chunks(writes, 5))) == [["a", "b", "c"], ["d"]]


def test_byte_budget_cuts_before_the_write_that_would_exceed_it():
    writes = [_write(i) for i in "abcde"]
    sizes = {"a": 40, "b": 50, "c": 20, "d": 100, "e": 1}
    chunks = list(_chunks(writes, 499, 100, lambda w: sizes[w.event_id]))
    assert _ids(chunks) == [["a", "b"], ["c"], ["d"], ["e"]]
    assert all(sum(sizes[w.event_id] for w in chunk) <= 100 for chunk in chunks)


def test_a_write_over_the_budget_goes_alone():
    writes = [_write("a"), _write("big"), _write("c")]
    sizes = {"a": 10, "big": 500, "c": 10}
    assert _ids(list(_chunks(writes, 499, 100, lambda w: sizes[w.event_id]))) == [
        ["a"], ["big"], ["c"]]
    assert list(_chunks([], 499, 100, lambda w: 1)) == []


def test_write_bytes_counts_the_snapshot_and_its_entry():
    small, large = _write_bytes("s", _write("a", 10)), _write_bytes("s", _write("a", 200_000))
    assert 400_000 < large < 401_000  # the description twice: snapshot and entry
    assert _write_bytes("s", _write("a", 200_000, change=False)) < 201_000
    assert small < 1000
    # The default budget holds a page of 200 KB events only in several commits.
    page = [_write(f"e{i}", 200_000) for i in range(40)]
    chunks = list(_chunks(page, 499, MAX_COMMIT_BYTES, lambda w: _write_bytes("s", w)))
    assert len(chunks) >= 5 and sum(len(c) for c in chunks) == 40
