"""Counters the control API reports: calls per method, items returned, notification outcomes."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """Thread-safe named counters, grouped (``calls``, ``items``, ``notifications``, ``tokens``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, Counter[str]] = {}

    def add(self, group: str, name: str, amount: int = 1) -> None:
        """Increase ``group[name]`` by ``amount``."""
        with self._lock:
            self._groups.setdefault(group, Counter())[name] += amount

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A copy of every group."""
        with self._lock:
            return {group: dict(values) for group, values in self._groups.items()}

    def reset(self) -> None:
        """Zero everything."""
        with self._lock:
            self._groups.clear()
