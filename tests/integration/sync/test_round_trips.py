"""A run's round trips before its page commit (issue 19 item 6), on the Firestore emulator.

The lease is one batch get of the subscription and `state/writer` and one write of
`state/writer` conditioned on what was read (no transaction: begin, two reads,
commit); that write's update time fences the run's first page commit, which then
needs no read. A write to `state/writer` between the lease's read and its write
makes it decide again (fencing holds). The delivering-channel check is made while
the lease is taken, and a run still opens a channel whenever none is delivering.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.config import Settings
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import LeaseOutcome
from functions.sync.engine import Outcome
from tests.integration.lifecycle.conftest import RecordingQueue, ScriptedChannels

from .harness import Harness

USER = "rtt@example.com"


class _RpcNames:
    """Delegates to the GAPIC Firestore client, noting the name of each RPC."""

    def __init__(self, api: Any, names: list[str]) -> None:
        self._api, self._names = api, names

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._api, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def noted(*args: Any, **kwargs: Any) -> Any:
            self._names.append(name)
            return attr(*args, **kwargs)

        return noted


@pytest.fixture
def rpcs(firestore_db: Any) -> Iterator[list[str]]:
    names: list[str] = []
    api = firestore_db._firestore_api
    firestore_db._firestore_api_internal = _RpcNames(api, names)
    try:
        yield names
    finally:
        firestore_db._firestore_api_internal = api


def test_lease_is_one_read_and_one_write(firestore_db: Any, calendar: Any,
                                         rpcs: list[str]) -> None:
    world = Harness(firestore_db, calendar, USER)
    world.insert("one", day=1)
    assert world.sync().outcome is Outcome.SYNCED
    world.request()
    rpcs.clear()
    now = world.clock()
    attempt = world.store.acquire_lease(world.sub.id, now, now + timedelta(seconds=60),
                                        min_gap=timedelta(seconds=2))
    assert attempt.outcome is LeaseOutcome.ACQUIRED
    assert rpcs == ["batch_get_documents", "commit"], rpcs


def test_one_page_run_reads_nothing_before_its_page_commit(firestore_db: Any, calendar: Any,
                                                           rpcs: list[str]) -> None:
    """Lease (read, write), the snapshot of the listed event, the page commit: the
    commit is conditioned on the lease's own write, so `state/writer` is not read."""
    world = Harness(firestore_db, calendar, USER)
    world.insert("one", day=1)
    assert world.sync().outcome is Outcome.SYNCED
    world.insert("two", day=2)
    world.request()
    rpcs.clear()
    report = world.engine().run(world.sub.id)
    assert report.outcome is Outcome.SYNCED and report.entries["created"] == 1, report
    first_commits = [i for i, name in enumerate(rpcs) if name == "commit"][:2]
    assert rpcs[:first_commits[1] + 1] == [
        "batch_get_documents", "commit",  # the lease
        "batch_get_documents",  # the listed event's snapshot
        "commit",  # the page, fenced on the lease's write
    ], rpcs
    world.check()


@pytest.mark.parametrize("state_exists", [True, False])
def test_a_write_between_the_leases_read_and_write_is_fenced(
        firestore_db: Any, calendar: Any, state_exists: bool) -> None:
    """Another run takes the lease after this one read: this one's conditioned write
    fails and it decides again from a new read (BUSY), never a second holder."""
    world = Harness(firestore_db, calendar, USER)
    if state_exists:
        world.insert("one", day=1)
        assert world.sync().outcome is Outcome.SYNCED
    world.request()
    now = world.clock()
    until = now + timedelta(seconds=60)
    other = FirestoreStore(firestore_db)

    class Interleaved(FirestoreStore):
        reads = 0

        def _read_both(self, sub_id: str) -> tuple[Any, Any]:
            found = super()._read_both(sub_id)
            Interleaved.reads += 1
            if Interleaved.reads == 1:  # the competitor wins the race, once
                taken = other.acquire_lease(sub_id, now, until)
                assert taken.outcome is LeaseOutcome.ACQUIRED
            return found

    attempt = Interleaved(firestore_db).acquire_lease(world.sub.id, now, until)
    assert attempt.outcome is LeaseOutcome.BUSY, attempt
    assert Interleaved.reads == 2
    state = world.store.get_writer_state(world.sub.id)
    assert state["lease_generation"] == (2 if state_exists else 1)


def test_a_run_opens_a_channel_whenever_none_is_delivering(firestore_db: Any,
                                                           calendar: Any) -> None:
    """The check made beside the lease skips the watch only when a channel delivers."""
    world = Harness(firestore_db, calendar, USER)
    settings = Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "local", "CALSYNC_TASKS_QUEUE": "q",
        "CALSYNC_WORKER_URL": "http://127.0.0.1:1/", "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
        "CALSYNC_CHANNEL_TOKEN_KEYS": "k:" + "b" * 43 + "="})
    subs = SubscriptionStore(firestore_db)
    channels = ScriptedChannels([datetime.now(UTC)])
    service = SubscriptionService(settings, subs, channels, world.store, RecordingQueue(),
                                  clock=world.clock)

    def run() -> None:
        world.request()
        engine = world.engine()
        engine._channels = service  # the worker's wiring (app.sync_engine)
        assert engine.run(world.sub.id).outcome is Outcome.SYNCED

    world.insert("one", day=1)
    run()
    assert len(channels.watched()) == 1
    world.insert("two", day=2)
    run()  # one delivers: no watch
    assert len(channels.watched()) == 1
    (channel,) = subs.delivering_channels(world.sub.id)
    assert service.move_channel(channel.id, "stopped")
    world.insert("three", day=3)
    run()  # none delivers: the run opens one before it lists
    assert len(channels.watched()) == 2
    assert len(subs.delivering_channels(world.sub.id)) == 1
    world.check()


def test_final_commit_reads_only_the_subscription(firestore_db: Any, calendar: Any,
                                                  rpcs: list[str]) -> None:
    """After the page commit, the final commit is one read (the subscription: is a
    request newer than the claim?) and one batch fenced on the run's own last write."""
    world = Harness(firestore_db, calendar, USER)
    world.insert("one", day=1)
    assert world.sync().outcome is Outcome.SYNCED
    world.insert("two", day=2)
    world.request()
    rpcs.clear()
    assert world.engine().run(world.sub.id).outcome is Outcome.SYNCED
    commits = [i for i, name in enumerate(rpcs) if name == "commit"]
    assert len(commits) == 3, rpcs  # lease, page, final
    assert rpcs[commits[1] + 1:] == ["batch_get_documents", "commit"], rpcs
    state = world.store.get_writer_state(world.sub.id)
    assert state["lease_until"] is None and state["synced_gen"] == state["claimed_gen"]
    world.check()


def test_a_request_recorded_during_the_final_commit_gets_its_follow_up(
        firestore_db: Any, calendar: Any) -> None:
    """The subscription is written between the final commit's read and its write: the
    batch fails whole, both are read again, and the newer request is seen (queued)."""
    world = Harness(firestore_db, calendar, USER)
    world.insert("one", day=1)
    calls = [0]

    class Racing(FirestoreStore):
        def _final_writes(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            calls[0] += 1
            if calls[0] == 1:
                world.store.record_sync_request(world.sub.id, world.clock())
            return super()._final_writes(*args, **kwargs)

    report = world.sync(store=Racing(firestore_db))
    assert report.outcome is Outcome.SYNCED and calls[0] == 2, (report, calls)
    sub = world.store.get_subscription(world.sub.id)
    state = world.store.get_writer_state(world.sub.id)
    assert sub is not None and sub.requested_gen == state["synced_gen"] + 1
    assert [t[3] for t in world.queue.tasks] == ["run"]  # the follow-up
    world.check()


def test_a_final_commit_that_landed_before_its_retry_failed_is_known(
        firestore_db: Any, calendar: Any) -> None:
    """The client retried a commit that had landed (the retry fails its condition):
    the store reads `commit_id`, knows it landed, and writes nothing twice."""
    world = Harness(firestore_db, calendar, USER)
    world.insert("one", day=1)
    from google.api_core import exceptions as gexc

    batches = [0]

    class LandedThenRefused(FirestoreStore):
        def _final_writes(self, batch: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            batches[0] += 1
            written = super()._final_writes(batch, *args, **kwargs)
            commit = batch.commit

            def landed_then_refused(*a: Any, **k: Any) -> Any:
                commit(*a, **k)
                raise gexc.FailedPrecondition("the retry of a commit that landed")

            if not getattr(LandedThenRefused, "done", False):
                LandedThenRefused.done = True  # type: ignore[attr-defined]
                batch.commit = landed_then_refused
            return written

    report = world.sync(store=LandedThenRefused(firestore_db))
    assert report.outcome is Outcome.SYNCED, report
    assert batches[0] == 1  # known to have landed: not written again
    state = world.store.get_writer_state(world.sub.id)
    assert state["lease_until"] is None and state["sync_token"]
    world.check()


def test_a_channel_check_that_fails_leaves_it_to_ensure_channel(firestore_db: Any,
                                                                calendar: Any) -> None:
    """The check beside the lease fails (Firestore unavailable for it): the run asks
    `ensure_channel`, which opens the missing channel before the listing."""
    from functions.errors import StoreUnavailable

    world = Harness(firestore_db, calendar, USER)
    settings = Settings.from_env({
        "GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "local", "CALSYNC_TASKS_QUEUE": "q",
        "CALSYNC_WORKER_URL": "http://127.0.0.1:1/", "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
        "CALSYNC_CHANNEL_TOKEN_KEYS": "k:" + "b" * 43 + "="})
    subs = SubscriptionStore(firestore_db)
    channels = ScriptedChannels([datetime.now(UTC)])

    class Failing(SubscriptionService):
        def has_delivering(self, sub_id: str) -> bool | None:
            raise StoreUnavailable("the check's read failed")

    service = Failing(settings, subs, channels, world.store, RecordingQueue(),
                      clock=world.clock)
    world.insert("one", day=1)
    world.request()
    engine = world.engine()
    engine._channels = service
    assert engine.run(world.sub.id).outcome is Outcome.SYNCED
    assert len(channels.watched()) == 1
    assert len(subs.delivering_channels(world.sub.id)) == 1
