"""The consumer's SQLite position store (examples/consumer/store.py): a change
and the position move together or not at all, only from the position the
caller read, and two processes sharing the file keep each other out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from examples import consumer as example


def change(seq: int, kind: str, event_id: str | None, **fields: tuple[Any, Any]) -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "event_id": event_id,
            "fields": {name: {"before": b, "after": a} for name, (b, a) in fields.items()}}


def test_entries_fold_into_the_copy_and_move_the_position(tmp_path: Path) -> None:
    store = example.SqliteConsumerStore(str(tmp_path / "s.sqlite3"))
    assert store.position("s") == 0 and store.events("s") == {}
    assert store.apply("s", 0, [
        change(1, "created", "a", id=(None, "a"), summary=(None, "A"), location=(None, "R1")),
        change(2, "created", "b", id=(None, "b"), summary=(None, "B")),
        change(3, "updated", "a", summary=("A", "A2"), location=("R1", None)),
        change(4, "resync_required", None),
        change(5, "deleted", "b", summary=("B", None)),
    ])
    assert store.position("s") == 5
    assert store.events("s") == {"a": {"id": "a", "summary": "A2"}}
    # Applying an entry again is harmless (its `after` values are complete).
    assert example.fold({"id": "a", "summary": "A2"},
                        change(3, "updated", "a", summary=("A", "A2"))) == {"id": "a",
                                                                            "summary": "A2"}


def test_only_from_the_position_read_and_all_or_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite3")
    one, other = example.SqliteConsumerStore(path), example.SqliteConsumerStore(path)
    assert one.apply("s", 0, [change(1, "created", "a", summary=(None, "A"))])
    # Another process read position 0 too: its apply changes nothing.
    assert not other.apply("s", 0, [change(1, "created", "x", summary=(None, "X"))])
    assert not other.replace("s", 0, {"x": {"summary": "X"}}, 9)
    assert other.position("s") == 1 and other.events("s") == {"a": {"summary": "A"}}
    with pytest.raises(KeyError):  # an event entry without its event id, mid-batch
        one.apply("s", 1, [change(2, "created", "b", summary=(None, "B")),
                           {"seq": 3, "kind": "updated", "fields": {}}])
    assert one.position("s") == 1 and one.events("s") == {"a": {"summary": "A"}}
    assert other.replace("s", 1, {"c": {"summary": "C"}}, 7)
    assert one.position("s") == 7 and one.events("s") == {"c": {"summary": "C"}}
    one.seed("s", 3)  # a start given for a subscription already seen changes nothing
    one.seed("t", 3)
    assert one.position("s") == 7 and one.position("t") == 3
