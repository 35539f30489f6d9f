"""The emulator clock: wall time plus an offset that the control API can move forward."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Thread-safe ``now()`` that tests can shift with ``advance``."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Current emulator time, timezone-aware UTC."""
        return datetime.now(UTC) + self._offset

    def timestamp(self) -> float:
        """Current emulator time as epoch seconds."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> datetime:
        """Move the clock by ``seconds`` (may be negative) and return the new time."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def reset(self) -> None:
        """Back to wall time."""
        with self._lock:
            self._offset = timedelta()
