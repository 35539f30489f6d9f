"""The evidence that an injected Calendar failure was answered (History.settle_evidence):
pure bookkeeping over the emulator's call counts, checked here against a stand-in
control that answers failures as the emulator does (in order, one per call)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from tests.faults.history import History


class QueueControl:
    """The Calendar emulator's failure queue and call counter, nothing else."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.queued: list[str] = []  # methods of the failures still queued, in order
        self.answered: Counter[str] = Counter()  # kind -> failures answered

    def counters(self) -> dict[str, Any]:
        return {"calls": dict(self.calls)}

    def inject_failure(self, method: str, status: int, reason: str, count: int = 1) -> None:
        self.queued.extend([method] * count)

    def call(self, method: str) -> None:
        self.calls[method] += 1
        if method in self.queued:
            self.queued.remove(method)


def history(control: QueueControl) -> History:
    return History(random.Random(0), control, service=None, cals=[])


def test_a_late_injection_is_proven_once_its_failures_were_answered() -> None:
    control = QueueControl()
    h = history(control)
    # Early failures, all answered long ago.
    h.inject("list_429", "events.list", 429, "rateLimitExceeded", count=2)
    h.inject("list_403_rate", "events.list", 403, "userRateLimitExceeded", count=2)
    for _ in range(10):
        control.call("events.list")
    # A late one: two more calls answer it; the cumulative count (6) is not needed.
    h.inject("list_5xx", "events.list", 503, "backendError", count=2)
    control.call("events.list")
    control.call("events.list")
    assert control.queued == []
    h.settle_evidence()
    assert h.taken == Counter({"list_429": 1, "list_403_rate": 1, "list_5xx": 1})


def test_an_injection_behind_unanswered_ones_is_not_proven() -> None:
    control = QueueControl()
    h = history(control)
    h.inject("list_429", "events.list", 429, "rateLimitExceeded", count=2)
    control.call("events.list")  # one of the two answered
    h.inject("list_5xx", "events.list", 500, "backendError", count=1)
    control.call("events.list")  # answers the 429's second failure, not ours
    h.inject("stop_fail", "channels.stop", 503, "backendError", count=1)
    h.settle_evidence()
    assert control.queued == ["events.list", "channels.stop"]
    assert h.taken == Counter({"list_429": 1})  # both of its failures answered
    control.call("events.list")
    control.call("channels.stop")
    h.taken.clear()
    h.settle_evidence()
    assert h.taken == Counter({"list_429": 1, "list_5xx": 1, "stop_fail": 1})
