"""The sync worker: one task body in, one sync run, one HTTP status out.

A task body names a subscription (a sync run) or an account (a calendar-list
run, `lifecycle.account_sync`). Statuses follow DESIGN.md: never 429 or 503
(Cloud Tasks would slow the whole queue); 500 only for transient failures, so
the task is retried with the queue's backoff; 400 for a body no retry can fix;
200 for everything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from functions.logs import log
from functions.sync.engine import Outcome, SyncEngine

MAX_ID_LENGTH = 512

_STATUS = {outcome: 200 for outcome in Outcome}
_STATUS[Outcome.TRANSIENT] = 500
_STATUS[Outcome.MISCONFIGURED] = 500

_SEVERITY = {
    Outcome.SYNCED: "INFO",
    Outcome.BUSY: "INFO",
    Outcome.DEFERRED: "INFO",
    Outcome.IDLE: "INFO",
    Outcome.NOT_FOUND: "WARNING",
    Outcome.INACTIVE: "INFO",
    Outcome.RATE_LIMITED: "WARNING",
    Outcome.CONTINUED: "INFO",
    Outcome.LEASE_LOST: "WARNING",
    # The user's doing (revoked grant, calendar gone): the subscription shows it;
    # ERROR is kept for calsync's own faults, which page (terraform/monitoring.tf).
    Outcome.FAILED: "WARNING",
    Outcome.TRANSIENT: "WARNING",
    Outcome.MISCONFIGURED: "ERROR",
}


class MalformedTask(ValueError):
    """The task body is neither `{"subscription_id": "<id>"}` nor `{"account_id": "<id>"}`;
    the message says why."""


@dataclass(frozen=True)
class SyncTask:
    """A parsed task body: a subscription's sync."""

    subscription_id: str


@dataclass(frozen=True)
class AccountTask:
    """A parsed task body: an account's calendar-list run."""

    account_id: str


class ListRunReport(Protocol):
    outcome: Outcome
    error: str | None

    def log_fields(self) -> dict[str, object]: ...


class ListRunner(Protocol):
    """Runs an account's calendar list (`lifecycle.account_sync.AccountSync`)."""

    def run(self, account_id: str) -> ListRunReport: ...


@dataclass(frozen=True)
class WorkerResponse:
    """What the HTTP handler answers: a status and a one-line reason."""

    status: int
    reason: str


def parse_task(body: bytes) -> SyncTask | AccountTask:
    """Parse a task body; raises MalformedTask with a one-line reason. The two kinds are
    told apart by their one key: `subscription_id` or `account_id`."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise MalformedTask("body is not JSON") from err
    if not isinstance(data, dict):
        raise MalformedTask("body must be a JSON object")
    if "account_id" in data:
        if "subscription_id" in data:
            raise MalformedTask("body names both a subscription_id and an account_id")
        return AccountTask(account_id=_document_id(data, "account_id"))
    return SyncTask(subscription_id=_document_id(data, "subscription_id"))


_RESERVED_ID = re.compile(r"__.*__", re.DOTALL)  # Firestore keeps these ids for itself


def _document_id(data: dict[str, object], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise MalformedTask(f"{name} must be a non-empty string")
    if (len(value) > MAX_ID_LENGTH or "/" in value or value in (".", "..")
            or _RESERVED_ID.fullmatch(value)):
        raise MalformedTask(f"{name} is not a valid document id")
    return value


class SyncWorker:
    """Runs the sync a task asks for; logs one JSON line per run."""

    def __init__(self, engine: Callable[[], SyncEngine],
                 accounts: Callable[[], ListRunner] | None = None) -> None:
        self._engine = engine
        self._accounts = accounts

    def handle(self, body: bytes) -> WorkerResponse:
        """Answer one task delivery."""
        try:
            task = parse_task(body)
        except MalformedTask as err:
            log("WARNING", "sync task rejected", outcome="malformed", error=str(err))
            return WorkerResponse(400, str(err))
        if isinstance(task, AccountTask):
            return self._list_run(task)
        try:
            report = self._engine().run(task.subscription_id)
        except Exception as err:  # noqa: BLE001 - a bug must still answer (and be retried)
            log("ERROR", "sync run crashed", subscription=task.subscription_id,
                outcome="crashed", error=f"{type(err).__name__}: {err}")
            return WorkerResponse(500, "sync run crashed")
        log(_SEVERITY[report.outcome], "sync run", **report.log_fields())
        reason = report.outcome.value + (f": {report.error}" if report.error else "")
        return WorkerResponse(_STATUS[report.outcome], reason)

    def _list_run(self, task: AccountTask) -> WorkerResponse:
        """An account's calendar-list run, answered by the same rules as a sync run."""
        if self._accounts is None:
            log("ERROR", "list task rejected", account=task.account_id,
                outcome="misconfigured", error="this worker runs no calendar-list tasks")
            return WorkerResponse(500, "misconfigured: no calendar-list runs")
        try:
            report = self._accounts().run(task.account_id)
        except Exception as err:  # noqa: BLE001 - a bug must still answer (and be retried)
            log("ERROR", "list run crashed", account=task.account_id, outcome="crashed",
                error=f"{type(err).__name__}: {err}")
            return WorkerResponse(500, "list run crashed")
        log(_SEVERITY[report.outcome], "list run", **report.log_fields())
        reason = report.outcome.value + (f": {report.error}" if report.error else "")
        return WorkerResponse(_STATUS[report.outcome], reason)
