"""Task bodies the worker accepts and rejects."""

from __future__ import annotations

import pytest

from functions.sync.worker import MalformedTask, parse_task


def test_valid_body():
    assert parse_task(b'{"subscription_id": "sub-1"}').subscription_id == "sub-1"


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"{}", b'{"subscription_id": 5}', b'{"subscription_id": " "}',
    b'{"subscription_id": "a/b"}', b"\xff\xfe",
])
def test_malformed_bodies(body: bytes):
    with pytest.raises(MalformedTask) as err:
        parse_task(body)
    assert "\n" not in str(err.value)


def test_an_account_task_is_told_apart_by_its_key():
    from functions.sync.worker import AccountTask, SyncTask

    assert parse_task(b'{"account_id": "acct-1"}') == AccountTask("acct-1")
    assert parse_task(b'{"subscription_id": "sub-1"}') == SyncTask("sub-1")


@pytest.mark.parametrize("body", [
    b'{"account_id": ""}', b'{"account_id": 3}', b'{"account_id": "a/b"}',
    b'{"account_id": ".."}', b'{"account_id": "a", "subscription_id": "b"}',
])
def test_malformed_account_bodies(body: bytes):
    with pytest.raises(MalformedTask) as err:
        parse_task(body)
    assert "\n" not in str(err.value)


def test_the_worker_answers_an_account_task_by_the_run_s_outcome():
    from functions.sync.engine import Outcome
    from functions.sync.worker import SyncWorker

    class Report:
        def __init__(self, outcome: Outcome) -> None:
            self.outcome = outcome
            self.error: str | None = None

        def log_fields(self) -> dict[str, object]:
            return {"account": "a", "outcome": self.outcome.value, "error": None}

    class Runner:
        def __init__(self, outcome: Outcome) -> None:
            self.outcome = outcome
            self.ran: list[str] = []

        def run(self, account_id: str) -> Report:
            self.ran.append(account_id)
            return Report(self.outcome)

    def no_engine():  # an account task never builds the sync engine
        raise AssertionError("sync engine built for an account task")

    for outcome, status in ((Outcome.SYNCED, 200), (Outcome.TRANSIENT, 500),
                            (Outcome.FAILED, 200), (Outcome.MISCONFIGURED, 500)):
        runner = Runner(outcome)
        answer = SyncWorker(no_engine, lambda r=runner: r).handle(b'{"account_id": "a"}')
        assert answer.status == status and runner.ran == ["a"]
    assert SyncWorker(no_engine).handle(b'{"account_id": "a"}').status == 500
