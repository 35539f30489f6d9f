"""The emulator clock: wall time plus an offset that the control API can move forward.

Tests can also freeze it: time then moves only by ``advance``, so window edges
(quotas, token lifetimes, channel expiry) can be hit exactly.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Thread-safe ``now()`` that tests can shift with ``advance`` and stop with ``freeze``."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._frozen_at: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Current emulator time, timezone-aware UTC."""
        frozen = self._frozen_at
        return (frozen if frozen is not None else datetime.now(UTC)) + self._offset

    def timestamp(self) -> float:
        """Current emulator time as epoch seconds."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> datetime:
        """Move the clock by ``seconds`` (may be negative) and return the new time."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def freeze(self, frozen: bool = True) -> datetime:
        """Stop the clock where it is (or, with False, let it run on from there)."""
        with self._lock:
            wall = datetime.now(UTC)
            if frozen and self._frozen_at is None:
                self._frozen_at = wall
            elif not frozen and self._frozen_at is not None:
                # Run on from the frozen moment, not jump to wall time.
                self._offset += self._frozen_at - wall
                self._frozen_at = None
        return self.now()

    def reset(self) -> None:
        """Back to wall time, running."""
        with self._lock:
            self._offset = timedelta()
            self._frozen_at = None
