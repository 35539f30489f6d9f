"""The sync worker: one task body in, one sync run, one HTTP status out.

Statuses follow DESIGN.md: never 429 or 503 (Cloud Tasks would slow the whole
queue); 500 only for transient failures, so the task is retried with the
queue's backoff; 400 for a body no retry can fix; 200 for everything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

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
    """The task body is not `{"subscription_id": "<id>"}`; the message says why."""


@dataclass(frozen=True)
class SyncTask:
    """A parsed task body."""

    subscription_id: str


@dataclass(frozen=True)
class WorkerResponse:
    """What the HTTP handler answers: a status and a one-line reason."""

    status: int
    reason: str


def parse_task(body: bytes) -> SyncTask:
    """Parse a task body; raises MalformedTask with a one-line reason."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise MalformedTask("body is not JSON") from err
    if not isinstance(data, dict):
        raise MalformedTask("body must be a JSON object")
    sub_id = data.get("subscription_id")
    if not isinstance(sub_id, str) or not sub_id.strip():
        raise MalformedTask("subscription_id must be a non-empty string")
    if len(sub_id) > MAX_ID_LENGTH or "/" in sub_id or sub_id in (".", ".."):
        raise MalformedTask("subscription_id is not a valid document id")
    return SyncTask(subscription_id=sub_id)


class SyncWorker:
    """Runs the sync a task asks for; logs one JSON line per run."""

    def __init__(self, engine: Callable[[], SyncEngine]) -> None:
        self._engine = engine

    def handle(self, body: bytes) -> WorkerResponse:
        """Answer one task delivery."""
        try:
            task = parse_task(body)
        except MalformedTask as err:
            log("WARNING", "sync task rejected", outcome="malformed", error=str(err))
            return WorkerResponse(400, str(err))
        try:
            report = self._engine().run(task.subscription_id)
        except Exception as err:  # noqa: BLE001 - a bug must still answer (and be retried)
            log("ERROR", "sync run crashed", subscription=task.subscription_id,
                outcome="crashed", error=f"{type(err).__name__}: {err}")
            return WorkerResponse(500, "sync run crashed")
        log(_SEVERITY[report.outcome], "sync run", **report.log_fields())
        reason = report.outcome.value + (f": {report.error}" if report.error else "")
        return WorkerResponse(_STATUS[report.outcome], reason)
