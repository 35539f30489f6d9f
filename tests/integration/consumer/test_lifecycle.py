"""The example consumer handles each lifecycle entry (DESIGN.md, "Accounts,
lifecycle events, watermark"), against the real `/v1` API over the Firestore
emulator: `error` / `reauthorization_required` are reported and kept as the
subscription's health, `recovered` resumes it, `resync_required` bootstraps the
copy again, `subscription_deleted` drops it, account entries are reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.api.feedwriter import FeedWriter, create_subscription, event

from .conftest import ApiOverStore
from .test_position import SUB, Consuming, copy_of, entry_of, lifecycle_entry, snapshots


def test_each_lifecycle_entry_is_handled(firestore_db: Any, real_api: ApiOverStore,
                                         serve: Callable[[Any], str], tmp_path: Path) -> None:
    create_subscription(firestore_db, SUB)
    writer = FeedWriter(firestore_db, SUB)
    writer.commit([event("e1", "one"), event("e2", "two")])
    app = Consuming(serve, real_api, tmp_path / "state.sqlite3")
    for seq in (1, 2):
        assert app.push(entry_of(writer, seq))[0] == 204
    head = f"subscription {SUB}"  # the full id: ids sharing a prefix are told apart

    failed = lifecycle_entry(writer, "reauthorization_required",
                             {"reason": "reauthorization_required", "message": "401"})
    assert app.push(entry_of(writer, failed)) == (204, "")
    assert app.store.health(SUB) == ("reauthorization_required", "reauthorization_required")
    assert app.lines[-1] == (f"{head}, seq {failed}, reauthorization_required: "
                             "reauthorization_required, the owner must connect again "
                             "(reported)")
    recovered = lifecycle_entry(writer, "recovered", {"reason": "reauthorization_required"})
    assert app.push(entry_of(writer, recovered)) == (204, "")
    assert app.store.health(SUB) == ("active", None)

    # A full listing replaced the incremental one: the copy is rebuilt from the
    # events pages (here it had missed nothing, and stays equal to the store's).
    writer.commit([event("e3", "three")])
    resync = lifecycle_entry(writer, "resync_required", {"reason": "sync_token_expired"})
    assert app.push(entry_of(writer, resync - 1)) == (204, "")
    assert app.push(entry_of(writer, resync)) == (204, "")
    assert app.lines[-1] == f"{head}, bootstrapped at seq {resync}: 3 events (resync_required)"
    assert any("/events?" in request for request in real_api.requests)
    assert app.store.position(SUB) == resync
    assert copy_of(app.store, SUB) == snapshots(writer)

    added = lifecycle_entry(writer, "calendar_added", {"calendar_id": "team@example.com"})
    assert app.push(entry_of(writer, added)) == (204, "")
    assert app.lines[-1] == f"{head}, seq {added}, calendar_added: team@example.com (reported)"

    deleted = lifecycle_entry(writer, "subscription_deleted",
                              {"calendar_id": "primary", "owner": "alice@example.com"})
    assert app.push(entry_of(writer, deleted)) == (204, "")
    assert app.store.events(SUB) == {}
    assert app.store.health(SUB) == ("deleted", None)
    assert app.store.position(SUB) == deleted
    assert app.lines[-1] == f"{head}, seq {deleted}, subscription_deleted: the subscription " \
        "is deleted (copy dropped)"
