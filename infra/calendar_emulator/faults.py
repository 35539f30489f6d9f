"""Injected failures (the next N calls of a method fail) and the per-user rate limit.

The rate limit is a test knob (any window, one user or all); Google's own
per-project and per-user quotas are in ``quotas``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from .clock import Clock
from .errors import ApiError, injected, rate_limited


@dataclass(frozen=True)
class InjectedFailure:
    """Answer ``status``/``reason`` to the next ``count`` calls of ``method`` (``*`` = any)."""

    method: str
    status: int
    reason: str
    message: str | None
    count: int


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` calls per user in any ``window`` seconds, else ``status`` (403 or 429)."""

    limit: int
    window: float
    status: int
    user: str | None


class Faults:
    """Decides, per call, whether an injected failure or the rate limit answers instead."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """No failures, no rate limit."""
        with self._lock:
            self._failures: list[InjectedFailure] = []
            self._rate_limit: RateLimit | None = None
            self._calls: dict[str, deque[float]] = {}

    def inject(self, failure: InjectedFailure) -> None:
        """Queue a failure; several queue up in order."""
        with self._lock:
            self._failures.append(failure)

    def clear_failures(self) -> None:
        """Drop every pending injected failure."""
        with self._lock:
            self._failures.clear()

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None:
        """Switch the per-user limit on (or off with None)."""
        with self._lock:
            self._rate_limit = rate_limit
            self._calls.clear()

    def check(self, method: str, user: str | None) -> None:
        """Raise the injected failure or rate-limit error for this call, if any."""
        with self._lock:
            for index, failure in enumerate(self._failures):
                if failure.method in (method, "*"):
                    remaining = failure.count - 1
                    if remaining > 0:
                        self._failures[index] = InjectedFailure(
                            failure.method,
                            failure.status,
                            failure.reason,
                            failure.message,
                            remaining,
                        )
                    else:
                        del self._failures[index]
                    raise injected(failure.status, failure.reason, failure.message)
            limit = self._rate_limit
            if limit is None or user is None or method == "token" or limit.user not in (None, user):
                return
            now = self._clock.timestamp()
            calls = self._calls.setdefault(user, deque())
            while calls and calls[0] <= now - limit.window:
                calls.popleft()
            if len(calls) >= limit.limit:
                raise rate_limited(limit.status)
            calls.append(now)


def failure_error(failure: InjectedFailure) -> ApiError:
    """The error a failure produces (for tests of the error shape)."""
    return injected(failure.status, failure.reason, failure.message)
