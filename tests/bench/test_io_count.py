"""The benches' read/write counter (bench/_world.py `count_io`) counts what Firestore bills,
checked against the real Firestore emulator."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Appended, not prepended: the bench scripts' names must not shadow anything.
sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))

from _world import count_io  # noqa: E402


def test_counts_documents_read_and_written(firestore_db: Any) -> None:
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    io = count_io(firestore_db)
    things = firestore_db.collection("things")
    batch = firestore_db.batch()
    for n in range(3):
        batch.set(things.document(f"t{n}"), {"n": n})
    batch.commit()
    things.document("t9").set({"n": 9})
    assert (io.reads, io.writes) == (0, 4)

    io.reset()
    assert things.document("t1").get().exists
    assert not things.document("absent").get().exists
    assert (io.reads, io.writes) == (2, 0)  # a lookup of a missing document is billed too

    io.reset()
    assert len(list(things.where(filter=FieldFilter("n", "<", 2)).stream())) == 2
    assert (io.reads, io.calls) == (2, {"run_query": 1})

    io.reset()
    assert list(things.where(filter=FieldFilter("n", ">", 100)).stream()) == []
    assert io.reads == 1  # an empty query is billed one read

    io.reset()

    @firestore.transactional
    def bump(transaction: Any) -> None:
        snapshot = things.document("t2").get(transaction=transaction)
        transaction.update(things.document("t2"), {"n": snapshot.get("n") + 1})
        transaction.set(things.document("t3"), {"n": 3})

    bump(firestore_db.transaction())
    assert (io.reads, io.writes) == (1, 2)
    assert things.document("t2").get().get("n") == 3
