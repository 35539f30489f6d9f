"""Fixtures for the emulator conformance suite: one emulator per session, reset per test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infra.calendar_emulator.testing import RunningEmulator, calendar_service, running_emulator

USER = "alice@example.com"


@pytest.fixture(scope="session")
def _emulator_session() -> Iterator[RunningEmulator]:
    with running_emulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_emulator_session: RunningEmulator) -> RunningEmulator:
    """A reset emulator; push retries start at 50 ms so retry tests stay quick."""
    _emulator_session.control.reset()
    _emulator_session.control.configure(retryInitialSeconds=0.05)
    return _emulator_session


@pytest.fixture
def service(emu: RunningEmulator) -> Any:
    """The real Calendar client acting as ``USER``."""
    return calendar_service(emu.base_url, USER)


class Receiver:
    """A loopback webhook that records notifications; ``statuses`` are answered in turn."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.notifications: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.on_request: Callable[[dict[str, str]], None] | None = None
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {key.lower(): value for key, value in self.headers.items()}
                if outer.on_request is not None:
                    outer.on_request(headers)
                with outer._lock:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.notifications.append({**headers, "_status": str(status)})
                    outer.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
        """The notifications once at least ``count`` arrived (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.notifications) < count:
            time.sleep(0.01)
        return list(self.notifications)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording webhook receiver on 127.0.0.1."""
    hook = Receiver()
    yield hook
    hook.close()


def timed(start: str, end: str, **extra: Any) -> dict[str, Any]:
    """An event body with UTC start/end (``2025-01-01T10:00:00``)."""
    return {"start": {"dateTime": start + "Z"}, "end": {"dateTime": end + "Z"}, **extra}
