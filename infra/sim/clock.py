"""Virtual time: a clock every service reads and a discrete-event loop that moves it.

Nothing in the simulation sleeps. The loop pops the earliest scheduled action,
sets the clock to its time and runs it; actions scheduled for the same instant
run in the order they were scheduled (a sequence number breaks ties), so a run
is deterministic for a given seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.calendar_emulator.clock import Clock as EmulatorClock

# A fixed origin keeps runs reproducible; a Monday at midnight UTC.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)


class VirtualClock:
    """Seconds since `start`, as a float (`t`) and as a timezone-aware datetime."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self.start = start
        self.start_ts = start.timestamp()
        self.t = 0.0

    def now(self) -> datetime:
        """The current virtual time (what every service's injected `clock` returns)."""
        return self.start + timedelta(seconds=self.t)

    def timestamp(self) -> float:
        """The current virtual time as epoch seconds."""
        return self.start_ts + self.t

    def at(self, moment: datetime) -> float:
        """A datetime as seconds since `start`."""
        return moment.timestamp() - self.start_ts

    def monotonic(self) -> float:
        """Stands in for `time.monotonic` where a service caches by wall time."""
        return self.t


class QuotaClock(EmulatorClock):
    """The Calendar emulator's clock reading virtual time, so its quota windows
    (`infra.calendar_emulator.quotas.Quotas`) slide with the simulation."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._virtual = clock

    def now(self) -> datetime:
        return self._virtual.now()

    def timestamp(self) -> float:
        return self._virtual.timestamp()


Action = Callable[..., None]


class EventLoop:
    """Scheduled actions in (time, scheduling order); `run` advances the clock."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Action, tuple[Any, ...]]] = []
        self._seq = 0
        self.processed = 0

    def at(self, when: float, action: Action, *args: Any) -> None:
        """Run `action(*args)` at `when` seconds since start (never in the past)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.clock.t), self._seq, action, args))

    def after(self, delay: float, action: Action, *args: Any) -> None:
        self.at(self.clock.t + max(delay, 0.0), action, *args)

    def pending(self) -> int:
        return len(self._heap)

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run(self, until: float, max_actions: int | None = None) -> None:
        """Run every action scheduled up to and including `until`; the clock ends there.

        With `max_actions`, raise `Spinning` rather than run more than that many (an
        action that keeps rescheduling itself at the same instant never lets time on).
        """
        heap = self._heap
        clock = self.clock
        budget = max_actions
        while heap and heap[0][0] <= until:
            when, _, action, args = heapq.heappop(heap)
            clock.t = when
            action(*args)
            self.processed += 1
            if budget is not None:
                budget -= 1
                if budget < 0:
                    raise Spinning(f"more than {max_actions} actions before t={until}; "
                                   f"now at t={clock.t}")
        clock.t = max(clock.t, until)


class Spinning(RuntimeError):
    """The loop ran more actions than allowed before reaching its time."""
