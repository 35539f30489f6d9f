"""Google's Calendar API quotas: per project and per user per project, sliding 60 s windows.

Off by default (``None`` limits). Every authenticated API call is one request;
the project is the ``x-goog-user-project`` header (google-auth sends it for
credentials with a quota project), else ``default``. A refused request does not
use up the window (unconfirmed; Google does not say). Requests are also counted
per project and per user per day, the day ending at midnight in
``day_time_zone`` (Google resets daily quotas at midnight Pacific time), so the
daily billing threshold arithmetic can be checked against real traffic.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .clock import Clock
from .errors import ApiError

DEFAULT_PROJECT = "default"
GOOGLE_PROJECT_PER_MINUTE = 10_000
GOOGLE_USER_PER_MINUTE = 600


@dataclass(frozen=True)
class QuotaSettings:
    """Limits (None: not enforced), the window, and the status over the project limit."""

    project_per_minute: int | None = None
    user_per_minute: int | None = None
    window_seconds: float = 60.0
    project_status: int = 403  # Google answers 403 or 429 rateLimitExceeded
    day_time_zone: str = "America/Los_Angeles"


def user_rate_limit_exceeded() -> ApiError:
    """403 over the per-user limit, body as in Google's error guide."""
    return ApiError(403, "userRateLimitExceeded", "User Rate Limit Exceeded", "usageLimits")


def rate_limit_exceeded(status: int) -> ApiError:
    """403 or 429 over the project limit, body as in Google's error guide."""
    return ApiError(status, "rateLimitExceeded", "Rate Limit Exceeded", "usageLimits")


class _Window:
    """Requests admitted in the last ``window`` seconds, as (time, count) pairs."""

    def __init__(self) -> None:
        self._slots: deque[tuple[float, int]] = deque()
        self.total = 0

    def slide(self, now: float, window: float) -> None:
        while self._slots and self._slots[0][0] <= now - window:
            self.total -= self._slots.popleft()[1]

    def add(self, now: float, count: int) -> None:
        self._slots.append((now, count))
        self.total += count


class Quotas:
    """Admits or refuses each request and keeps the daily counters."""

    def __init__(self, clock: Clock, settings: QuotaSettings | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._startup = settings or QuotaSettings()
        self.reset()

    def reset(self) -> None:
        """Back to the settings the emulator started with; windows and counters empty."""
        self.configure(self._startup)
        with self._lock:
            self._daily: dict[str, dict[str, dict[str, dict[str, int]]]] = {
                "projects": {},
                "users": {},
            }

    @property
    def settings(self) -> QuotaSettings:
        """The settings in force."""
        return self._settings

    def configure(self, settings: QuotaSettings) -> None:
        """New limits; the windows start empty."""
        zone = ZoneInfo(settings.day_time_zone)
        with self._lock:
            self._settings, self._zone = settings, zone
            self._projects: dict[str, _Window] = {}
            self._users: dict[tuple[str, str], _Window] = {}

    def admit(self, project: str | None, user: str) -> None:
        """Count one request, or raise the error Google answers over a limit."""
        project = project or DEFAULT_PROJECT
        with self._lock:
            now = self._clock.timestamp()
            settings = self._settings
            user_window = project_window = None
            if settings.user_per_minute is not None:
                user_window = self._users.setdefault((project, user), _Window())
                user_window.slide(now, settings.window_seconds)
            if settings.project_per_minute is not None:
                project_window = self._projects.setdefault(project, _Window())
                project_window.slide(now, settings.window_seconds)
            refusal = None
            if user_window is not None and user_window.total >= (settings.user_per_minute or 0):
                refusal = user_rate_limit_exceeded()
            elif project_window is not None and project_window.total >= (
                settings.project_per_minute or 0
            ):
                refusal = rate_limit_exceeded(settings.project_status)
            self._count(now, project, user, "refused" if refusal else "requests", 1)
            if refusal is not None:
                raise refusal
            for window in (user_window, project_window):
                if window is not None:
                    window.add(now, 1)

    def charge(self, project: str | None, user: str, count: int) -> None:
        """Count ``count`` requests as admitted (traffic from elsewhere in the project)."""
        project = project or DEFAULT_PROJECT
        with self._lock:
            now = self._clock.timestamp()
            self._count(now, project, user, "requests", count)
            if self._settings.user_per_minute is not None:
                self._users.setdefault((project, user), _Window()).add(now, count)
            if self._settings.project_per_minute is not None:
                self._projects.setdefault(project, _Window()).add(now, count)

    def usage(self) -> dict[str, Any]:
        """Requests and refusals per project and per user per day, and today's date."""
        with self._lock:
            return {
                "day": self._day(self._clock.timestamp()),
                "timeZone": self._settings.day_time_zone,
                "projects": _copy(self._daily["projects"]),
                "users": _copy(self._daily["users"]),
            }

    def with_changes(self, **changes: Any) -> QuotaSettings:
        """The current settings with some fields replaced (validated by the caller)."""
        return replace(self._settings, **changes)

    def _day(self, now: float) -> str:
        return datetime.fromtimestamp(now, self._zone).date().isoformat()

    def _count(self, now: float, project: str, user: str, outcome: str, count: int) -> None:
        day = self._day(now)
        for group, key in (("projects", project), ("users", user)):
            days = self._daily[group].setdefault(key, {})
            tally = days.setdefault(day, {"requests": 0, "refused": 0})
            tally[outcome] += count


def _copy(groups: dict[str, dict[str, dict[str, int]]]) -> dict[str, Any]:
    return {key: {day: dict(tally) for day, tally in days.items()} for key, days in groups.items()}
