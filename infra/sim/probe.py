"""Staleness: from the moment a change is made on Google's side to its feed entry.

The fake Calendar reports every change it makes (calendar, event id, its
version, the time); the store reports every committed change entry (its
event id and etag, which carries the version) and every final commit (the
sync token, which carries the calendar's version). A change is resolved:

- by the first committed entry of the same event at that version or later
  (the feed now shows it, or a later state of the event), or
- by a final commit whose token covers its version, when no entry was due
  (an event created and deleted before any run saw it): the run listed it and
  decided, rightly, that there was nothing to report.

Its staleness is the time between the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class StalenessProbe:
    def __init__(self, now: Callable[[], float], calendar_of: Callable[[str], str]) -> None:
        self._now = now
        self._calendar_of = calendar_of
        # calendar -> event id -> [(version, made at)], versions ascending
        self._pending: dict[str, dict[str, list[tuple[int, float]]]] = {}
        self.samples: list[float] = []
        self.worst: list[tuple[float, str, str, float]] = []  # (staleness, calendar, event, made)
        self.made = 0
        self.measure_until = math.inf  # changes made after this are not measured

    def changed(self, calendar_id: str, event_id: str, version: int, t: float) -> None:
        if t >= self.measure_until:
            return
        self.made += 1
        self._pending.setdefault(calendar_id, {}).setdefault(event_id, []).append((version, t))

    def entries(self, sub_id: str, entries: list[dict[str, Any]]) -> None:
        calendar_id = self._calendar_of(sub_id)
        pending = self._pending.get(calendar_id)
        if not pending:
            return
        now = self._now()
        for entry in entries:
            waiting = pending.get(str(entry.get("event_id")))
            version = _version(entry.get("etag"))
            if not waiting or version is None:
                continue
            while waiting and waiting[0][0] <= version:
                self._resolved(now, calendar_id, str(entry.get("event_id")), waiting.pop(0)[1])
            if not waiting:
                del pending[str(entry.get("event_id"))]

    def final(self, sub_id: str, sync_token: str) -> None:
        calendar_id = self._calendar_of(sub_id)
        pending = self._pending.get(calendar_id)
        version = _token_version(sync_token)
        if not pending or version is None:
            return
        now = self._now()
        for event_id in list(pending):
            waiting = pending[event_id]
            while waiting and waiting[0][0] <= version:
                self._resolved(now, calendar_id, event_id, waiting.pop(0)[1])
            if not waiting:
                del pending[event_id]

    def _resolved(self, now: float, calendar_id: str, event_id: str, made: float) -> None:
        staleness = now - made
        self.samples.append(staleness)
        if len(self.worst) < 5 or staleness > self.worst[-1][0]:
            self.worst = sorted([*self.worst, (staleness, calendar_id, event_id, made)],
                                reverse=True)[:5]

    def unresolved(self) -> int:
        return sum(len(w) for events in self._pending.values() for w in events.values())

    def oldest_unresolved(self) -> float | None:
        times = [w[0][1] for events in self._pending.values() for w in events.values() if w]
        return min(times) if times else None


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _version(etag: Any) -> int | None:
    try:
        return int(str(etag).strip('"'))
    except ValueError:
        return None


def _token_version(token: str) -> int | None:
    try:
        return int(token.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None
