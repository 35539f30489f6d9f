"""What a liveness test on a hooked stack does in-process, as the CLI does: calsync's
`app` on the stack's environment, and waiting for a state with a one-line failure."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faults.world import World


@contextlib.contextmanager
def calsync_app(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`functions.app` built from the stack's environment (fresh on entry and exit)."""
    from functions import app

    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    app.reset()
    try:
        yield app
    finally:
        app.reset()


def wait_for(what: str, done: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `done` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.3)
    raise AssertionError(f"after {timeout:.0f}s, still not: {what}")
