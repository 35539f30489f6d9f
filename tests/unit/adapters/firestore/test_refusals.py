"""Which Firestore failures are permanent (the data itself is refused) and how a
refused page commit is narrowed to the event that causes it. Firestore's own
refusals are stubbed here: the emulator does not enforce the index-entry limit
(the emulator tests in tests/integration/sync/test_store_limits.py cover the
refusals it does enforce)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from functions.adapters.firestore.store import FirestoreStore, refusal
from functions.errors import LeaseLost, StoreRejected, StoreUnavailable
from functions.model import ChangeDraft, EventWrite, Lease, Subscription

T0 = datetime(2030, 1, 1, tzinfo=UTC)
INDEX = "too many index entries for entity"
FIELD = "field name '__x__' is reserved."


@pytest.mark.parametrize(("err", "reason"), [
    (gexc.InvalidArgument(INDEX), INDEX),
    (gexc.InvalidArgument(FIELD), FIELD),
    (gexc.InvalidArgument("maximum entity size is 1048576 bytes"),
     "maximum entity size is 1048576 bytes"),
    (gexc.InvalidArgument("Transaction too big. Decrease transaction size."),
     "Transaction too big. Decrease transaction size."),
    (gexc.RetryError("Timeout of 60.0s exceeded",
                     gexc.ResourceExhausted("gRPC message exceeds maximum size 4194304: 5400458")),
     "gRPC message exceeds maximum size 4194304: 5400458"),
])
def test_refusals_of_the_data_are_permanent(err: Exception, reason: str):
    assert refusal(err) == reason


@pytest.mark.parametrize("err", [
    gexc.RetryError("Timeout of 60.0s exceeded", gexc.DeadlineExceeded("slow")),
    gexc.RetryError("Timeout of 60.0s exceeded", gexc.ServiceUnavailable("down")),
    gexc.DeadlineExceeded("deadline"),
    gexc.ResourceExhausted("Quota exceeded."),
    gexc.Aborted("contention"),
    gexc.ServiceUnavailable("unavailable"),
    None,
])
def test_other_failures_are_not_refusals(err: Exception | None):
    assert refusal(err) is None


class StubbedCommits(FirestoreStore):
    """FirestoreStore whose transactions are replaced by `refuse`: the encoding,
    size checks and narrowing are the real code."""

    def __init__(self, refuse: Any) -> None:
        super().__init__(client=None)  # type: ignore[arg-type]
        self.refuse = refuse
        self.attempts: list[list[str]] = []
        self.committed: list[str] = []

    def _commit_once(self, lease: Lease, encoded: list[Any], until: datetime,
                     now: datetime | None = None, committed: list[Any] | None = None) -> None:
        ids = [item.event_id for item in encoded]
        self.attempts.append(ids)
        err = self.refuse(ids)
        if err is not None:
            raise err
        self.committed.extend(ids)


def _lease() -> Lease:
    sub = Subscription(id="s", calendar_id="primary", owner="o")
    return Lease(subscription=sub, generation=1, claimed_gen=1, sync_token=None,
                 first_sync=True, started_at=T0, until=T0 + timedelta(minutes=2))


def _writes(*ids: str) -> list[EventWrite]:
    return [EventWrite(i, {"id": i, "etag": "1", "_deleted": False},
                       ChangeDraft("created", i, {"summary": {"before": None, "after": i}}, "1"))
            for i in ids]


@pytest.mark.parametrize("message", [INDEX, FIELD])
def test_a_refused_event_is_found_and_named(message: str):
    def refuse(ids: list[str]) -> Exception | None:
        return gexc.InvalidArgument(message) if "e5" in ids else None

    store = StubbedCommits(refuse)
    ids = [f"e{i}" for i in range(8)]
    with pytest.raises(StoreRejected) as rejected:
        store.commit_page(_lease(), _writes(*ids), T0, T0 + timedelta(minutes=2))
    assert str(rejected.value) == f"event e5 was refused by Firestore: {message}"
    assert store.committed == ["e0", "e1", "e2", "e3", "e4"]  # in order, up to the refused one
    assert len(store.attempts) <= 8  # halving, not one commit per event


def test_a_request_refused_only_as_a_whole_commits_in_pieces():
    def refuse(ids: list[str]) -> Exception | None:
        return gexc.InvalidArgument("Transaction too big.") if len(ids) > 2 else None

    store = StubbedCommits(refuse)
    ids = [f"e{i}" for i in range(7)]
    store.commit_page(_lease(), _writes(*ids), T0, T0 + timedelta(minutes=2))
    assert store.committed == ids


@pytest.mark.parametrize(("err", "raised"), [
    (gexc.RetryError("Timeout of 60.0s exceeded", gexc.DeadlineExceeded("slow")),
     StoreUnavailable),
    (gexc.DeadlineExceeded("deadline"), StoreUnavailable),
    (LeaseLost("taken over"), LeaseLost),
])
def test_transient_failures_and_lost_leases_are_not_narrowed(err: Exception, raised: type):
    store = StubbedCommits(lambda ids: err)
    with pytest.raises(raised) as caught:
        store.commit_page(_lease(), _writes("a", "b", "c"), T0, T0 + timedelta(minutes=2))
    assert not isinstance(caught.value, StoreRejected)
    assert store.attempts == [["a", "b", "c"]] and store.committed == []


def test_a_document_over_1_mib_is_named_before_anything_is_sent():
    store = StubbedCommits(lambda ids: None)
    writes = _writes("a") + [EventWrite("big", {"id": "big", "description": "x" * 1_100_000})]
    with pytest.raises(StoreRejected, match=r"^event big is 11\d{5} bytes, over Firestore's "
                                            r"1 MiB document limit$"):
        store.commit_page(_lease(), writes, T0, T0 + timedelta(minutes=2))
    assert store.attempts == []


def test_an_entry_over_1_mib_is_named_too():
    store = StubbedCommits(lambda ids: None)
    text = "x" * 600_000
    change = ChangeDraft("updated", "e", {"description": {"before": text, "after": text + "y"}},
                         "2")
    with pytest.raises(StoreRejected, match="^the change entry of event e is .* 1 MiB"):
        store.commit_page(_lease(), [EventWrite("e", {"id": "e", "description": text + "y"},
                                                change)], T0, T0 + timedelta(minutes=2))
    assert store.attempts == []
