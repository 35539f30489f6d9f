"""What a run's fenced writes set in `state/writer` for the outbox
(`store.outbox_fields`, pure): the emulator tests cover the writes themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.cloud import firestore

from functions.adapters.firestore.store import outbox_fields
from functions.ports import PublishProgress

NOW = datetime(2031, 1, 1, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=5)


def test_without_a_topic_where_the_outbox_stood_is_forgotten() -> None:
    state = {"published_seq": 4, "publish_pending_since": EARLIER, "publish_attempts": 2}
    fields = outbox_fields(state, outbox=False, first=6, change_seq=8, now=NOW)
    assert fields == {"published_seq": firestore.DELETE_FIELD,
                      "publish_pending_since": firestore.DELETE_FIELD,
                      "publish_attempts": firestore.DELETE_FIELD}
    assert outbox_fields({}, outbox=False, first=6, change_seq=8, now=NOW) == {}


def test_the_first_commit_under_a_topic_starts_at_what_came_before() -> None:
    assert outbox_fields({}, outbox=True, first=6, change_seq=8, now=NOW) == {
        "published_seq": 6, "publish_pending_since": NOW, "publish_sweep_at": NOW}
    assert outbox_fields({}, outbox=True, first=6, change_seq=6, now=NOW) == {}


def test_new_entries_mark_the_outbox_pending_once() -> None:
    caught_up = {"published_seq": 6, "publish_pending_since": None}
    assert outbox_fields(caught_up, outbox=True, first=6, change_seq=8, now=NOW) == {
        "publish_pending_since": NOW, "publish_sweep_at": NOW}
    pending = {"published_seq": 6, "publish_pending_since": EARLIER,
               "publish_sweep_at": EARLIER}
    assert outbox_fields(pending, outbox=True, first=8, change_seq=9, now=NOW) == {}


def test_progress_rides_on_the_commit_and_moves_the_pending_moment() -> None:
    state = {"published_seq": 2, "publish_pending_since": EARLIER, "publish_attempts": 3,
             "publish_sweep_at": NOW + timedelta(hours=1)}
    later = EARLIER + timedelta(minutes=1)
    fields = outbox_fields(state, outbox=True, first=9, change_seq=12, now=NOW,
                           progress=PublishProgress(7, oldest_unpublished_at=later))
    # Progress: no longer backing off, the sweep's key is the pending time again.
    assert fields == {"published_seq": 7, "publish_pending_since": later,
                      "publish_sweep_at": later, "publish_attempts": None}


def test_caught_up_clears_the_outbox_marks() -> None:
    state = {"published_seq": 2, "publish_pending_since": EARLIER, "publish_attempts": 1,
             "publish_attempted_at": EARLIER}
    fields = outbox_fields(state, outbox=True, first=12, change_seq=12, now=NOW,
                           progress=PublishProgress(12))
    assert fields == {"published_seq": 12, "publish_pending_since": None,
                      "publish_attempts": None, "publish_attempted_at": None}


def test_published_seq_never_goes_back_nor_past_change_seq() -> None:
    state = {"published_seq": 9, "publish_pending_since": EARLIER,
             "publish_sweep_at": EARLIER}
    assert outbox_fields(state, outbox=True, first=12, change_seq=12, now=NOW,
                         progress=PublishProgress(5)) == {}
    fields = outbox_fields({"published_seq": 9, "publish_pending_since": EARLIER},
                           outbox=True, first=12, change_seq=12, now=NOW,
                           progress=PublishProgress(40))
    assert fields["published_seq"] == 12


def test_a_run_that_got_nothing_through_counts_an_attempt() -> None:
    state = {"published_seq": 2, "publish_pending_since": EARLIER, "publish_attempts": 1,
             "publish_sweep_at": EARLIER}
    fields = outbox_fields(state, outbox=True, first=12, change_seq=12, now=NOW,
                           progress=PublishProgress(2, stalled=True))
    # The sweep moves the row to its next attempt when it reads it (delivery/sweep.py).
    assert fields == {"publish_attempts": 2, "publish_attempted_at": NOW}


def test_the_sweeps_sort_key_is_cleared_with_the_other_marks() -> None:
    state = {"published_seq": 2, "publish_pending_since": EARLIER,
             "publish_sweep_at": NOW + timedelta(hours=1)}
    assert outbox_fields(state, outbox=True, first=12, change_seq=12, now=NOW,
                         progress=PublishProgress(12)) == {
        "published_seq": 12, "publish_pending_since": None, "publish_sweep_at": None}
    assert outbox_fields(state, outbox=False, first=12, change_seq=12, now=NOW) == {
        "published_seq": firestore.DELETE_FIELD,
        "publish_pending_since": firestore.DELETE_FIELD,
        "publish_sweep_at": firestore.DELETE_FIELD}


def test_new_entries_leave_a_backing_off_row_where_the_sweep_moved_it() -> None:
    moved = NOW + timedelta(hours=1)
    state = {"published_seq": 2, "publish_pending_since": EARLIER, "publish_attempts": 4,
             "publish_sweep_at": moved}
    assert outbox_fields(state, outbox=True, first=12, change_seq=14, now=NOW) == {}


def test_a_pending_row_written_before_the_sort_key_existed_gets_it() -> None:
    legacy = {"published_seq": 2, "publish_pending_since": EARLIER, "publish_attempts": 1}
    assert outbox_fields(legacy, outbox=True, first=12, change_seq=14, now=NOW) == {
        "publish_sweep_at": EARLIER}
    assert outbox_fields(legacy, outbox=True, first=14, change_seq=14, now=NOW,
                         progress=PublishProgress(2, stalled=True)) == {
        "publish_sweep_at": EARLIER, "publish_attempts": 2, "publish_attempted_at": NOW}
