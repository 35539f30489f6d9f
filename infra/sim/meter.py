"""Counting what the simulated world does: per document, per minute, per caller.

`IoMeter` counts Firestore document reads and writes as Firestore bills them
(a document returned by a lookup or a query is one read, an empty query is one
read, each document set/updated/deleted in a commit is one write), per
document path and per minute of virtual time, and keeps, for every document,
the most writes it took in any one second and in any one minute: the hottest
document is the one Firestore's ~1 sustained write per second per document
rule is about. `Timeline` is a per-second counter for anything else (Calendar calls,
dispatches), from which per-minute figures are summed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable


class Timeline:
    """Counts per virtual second (a list indexed by the second: cheap to add to)."""

    def __init__(self) -> None:
        self.total = 0
        self.seconds: list[int] = []

    def add(self, t: float, count: int = 1) -> None:
        self.total += count
        second = int(t)
        seconds = self.seconds
        if second >= len(seconds):
            seconds.extend([0] * (second - len(seconds) + 3600))
        seconds[second] += count

    def peak_second(self, start: float = 0.0, end: float = float("inf")) -> int:
        window = self.seconds[int(start):int(min(end, len(self.seconds)))]
        return max(window, default=0)

    def per_minute(self, start: float = 0.0, end: float = float("inf")) -> list[int]:
        """Counts per whole minute from `start` (in seconds, a multiple of 60) to `end`."""
        last = int(min(end, len(self.seconds)))
        return [sum(self.seconds[m:min(m + 60, last)]) for m in range(int(start), last, 60)]

    def peak_minute(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max(self.per_minute(start, end), default=0)

    def between(self, start: float, end: float) -> int:
        return sum(self.seconds[int(start):int(min(end, len(self.seconds)))])


class _DocWrites:
    """One document's write record: its busiest second and minute so far."""

    __slots__ = ("total", "second", "in_second", "max_second", "minute", "in_minute",
                 "max_minute")

    def __init__(self) -> None:
        self.total = 0
        self.second = self.minute = -1
        self.in_second = self.max_second = self.in_minute = self.max_minute = 0

    def add(self, t: float) -> None:
        self.total += 1
        second = int(t)
        if second != self.second:
            self.second, self.in_second = second, 0
        self.in_second += 1
        self.max_second = max(self.max_second, self.in_second)
        minute = second // 60
        if minute != self.minute:
            self.minute, self.in_minute = minute, 0
        self.in_minute += 1
        self.max_minute = max(self.max_minute, self.in_minute)


class IoMeter:
    """Firestore reads and writes of the simulated database."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.reads = Timeline()
        self.writes = Timeline()
        self.reads_by_path: Counter[str] = Counter()
        self.writes_by_path: dict[str, _DocWrites] = {}
        self.empty_queries: Counter[str] = Counter()  # billed one read each, by collection
        self.enabled = True  # off while the world is seeded
        # A run's publishing thread reads beside its run: no count may be lost.
        self._lock = threading.Lock()

    def read(self, path: str) -> None:
        if self.enabled:
            with self._lock:
                self.reads.add(self._now())
                self.reads_by_path[path] += 1

    def read_many(self, paths: list[str], collection: str) -> None:
        """A query: each document returned is a read; an empty result is billed as one."""
        if not self.enabled:
            return
        with self._lock:
            self.reads.add(self._now(), max(len(paths), 1))
            if not paths:
                self.empty_queries[collection] += 1
            for path in paths:
                self.reads_by_path[path] += 1

    def write(self, path: str) -> None:
        if not self.enabled:
            return
        t = self._now()
        with self._lock:
            self.writes.add(t)
            record = self.writes_by_path.get(path)
            if record is None:
                record = self.writes_by_path[path] = _DocWrites()
            record.add(t)

    def reads_by_collection(self) -> Counter[str]:
        found: Counter[str] = Counter(self.empty_queries)
        for path, count in self.reads_by_path.items():
            found[_collection(path)] += count
        return found

    def writes_by_collection(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for path, record in self.writes_by_path.items():
            found[_collection(path)] += record.total
        return found

    def hottest(self) -> tuple[str, int, int]:
        """(path, most writes in one minute, most writes in one second) of the document
        with the busiest minute; ("", 0, 0) when nothing was written."""
        best: tuple[str, int, int] = ("", 0, 0)
        for path, record in self.writes_by_path.items():
            if (record.max_minute, record.max_second) > (best[1], best[2]):
                best = (path, record.max_minute, record.max_second)
        return best

    def hottest_second(self) -> tuple[str, int]:
        """The document with the most writes in any one second."""
        best: tuple[str, int] = ("", 0)
        for path, record in self.writes_by_path.items():
            if record.max_second > best[1]:
                best = (path, record.max_second)
        return best


def _collection(path: str) -> str:
    """`subscriptions/x/state/writer` -> `state`; `channels/c` -> `channels`."""
    parts = path.split("/")
    return parts[-2] if len(parts) >= 2 else path
