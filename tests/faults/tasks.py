"""A Cloud Tasks client double that enforces production's task-name rule.

Production refuses a task name for about an hour after it was used (created,
whether or not the task has run since): `AlreadyExists`. The emulator accepts
the name again. `NameRuleClient` wraps the real google-cloud-tasks client talking
to the emulator and raises `AlreadyExists` for a reused name before the call
reaches it; everything else (dispatch, retries, schedule times) stays the
emulator's. See DESIGN.md, "Cloud Tasks rules the emulator does not enforce".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc

NAME_REUSE_SECONDS = 3600.0


class NameRuleClient:
    """Delegates to `inner` (a real `CloudTasksClient`); a reused name raises AlreadyExists."""

    def __init__(self, inner: Any, reuse_seconds: float = NAME_REUSE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._inner = inner
        self._reuse = reuse_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}
        self.created: list[str] = []
        self.refused: list[str] = []

    def create_task(self, *args: Any, **kwargs: Any) -> Any:
        task = kwargs.get("task", args[1] if len(args) > 1 else None)
        name = str(getattr(task, "name", "") or "")
        if name:
            with self._lock:
                used = self._used.get(name)
                if used is not None and self._clock() - used < self._reuse:
                    self.refused.append(name)
                    raise gexc.AlreadyExists(f"Requested entity already exists: {name}")
        result = self._inner.create_task(*args, **kwargs)
        with self._lock:
            if name:
                self._used[name] = self._clock()
            self.created.append(name or str(getattr(result, "name", "")))
        return result

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)
