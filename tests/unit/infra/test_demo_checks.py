"""The demo's own checks: the accounts chapter's "each feed entry once, in seq order"
judgement of the example consumer's log, and a check that fails says why in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.demo_accounts import ConsumerView, applied_problem
from infra.demo_kit import DemoFailed, expect

SUB = "abc0123456789"
TWIN = "abcffffffffff"  # shares its first characters with SUB


def test_each_seq_once_in_order_passes() -> None:
    assert applied_problem([("seq", 1), ("seq", 2), ("seq", 3)], {SUB: 3}) is None


@pytest.mark.parametrize("printed", [
    [("seq", 1), ("seq", 2), ("seq", 2), ("seq", 3)],  # doubled
    [("seq", 1), ("seq", 3)],  # lost
    [("seq", 2), ("seq", 1), ("seq", 3)],  # out of order
    [("seq", 1), ("seq", 2)],  # not at the feed's end
])
def test_a_doubled_lost_or_reordered_entry_is_named(printed: list[tuple[str, int]]) -> None:
    problem = applied_problem(printed, {SUB: 3})
    assert problem is not None and SUB in problem and "\n" not in problem


def test_a_bootstrap_restarts_the_count_at_its_seq() -> None:
    printed = [("seq", 1), ("bootstrap", 5), ("seq", 6), ("seq", 7)]
    assert applied_problem(printed, {SUB: 7}) is None
    assert applied_problem(printed, {SUB: 8}) is not None


def test_ids_printed_alike_are_checked_by_counts() -> None:
    printed = [("seq", 1), ("seq", 1), ("seq", 2)]
    assert applied_problem(printed, {SUB: 2, TWIN: 1}) is None
    assert applied_problem(printed + [("seq", 2)], {SUB: 2, TWIN: 1}) is not None


def test_the_consumer_log_is_read_by_full_id(tmp_path: Path) -> None:
    (tmp_path / "consumer.log").write_text(
        "consumer: INSECURE: ...\n"
        f"subscription {SUB}, seq 1, calendar_added: skipped (a kind this consumer does not know)\n"
        f"subscription {SUB}, seq 2, created: 'Dentist, recovered' (e1)\n"
        f"subscription {TWIN}, bootstrapped at seq 4: 2 events\n"
        f"subscription {TWIN}, seq 5, updated: summary 'a' → 'b'\n")
    view = ConsumerView(tmp_path)
    # Two ids that share their first characters are told apart.
    assert view.printed() == {SUB: [("seq", 1), ("seq", 2)],
                              TWIN: [("bootstrap", 4), ("seq", 5)]}
    assert len(view.lines(SUB)) == 2
    assert len(view.lines(TWIN)) == 2
    assert view.line_of(SUB, "calendar_added") is not None
    assert view.line_of(SUB, "recovered") is None  # named after the colon is not the kind


def test_a_check_that_never_holds_fails_with_one_line() -> None:
    with pytest.raises(DemoFailed, match=r"^after 0s, still not: the calendar followed$"):
        expect(lambda: False, 0.01, "the calendar followed")
