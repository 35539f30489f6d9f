"""Child processes that are always cleaned up: own process group, own log file."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class StackError(RuntimeError):
    """A component could not be started; the message says which and why."""


# Ports for the components come from below the kernel's ephemeral range (32768-60999
# here): a port the kernel hands out with bind(0) is also what it hands to outgoing
# connections, so in the seconds between choosing it and the component binding it,
# any client connection on the machine (another test run beside this one) could take
# it. Below that range only another chooser can, and each port is handed out once
# per process.
_PORT_RANGE = (20000, 32767)
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, not handed out before by this process."""
    with _ports_lock:
        for _ in range(1000):
            port = random.randint(*_PORT_RANGE)
            if port not in _handed_out and not port_in_use(port, host):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # pragma: no cover
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class ManagedProcess:
    """One started component. `stop()` kills its whole process group."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    on_start: Callable[[ManagedProcess], None] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its life
        try:
            self.process = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() reaches grandchildren
            )
        except OSError as err:
            raise StackError(f"{self.name}: cannot run {self.argv[0]}: {err}") from err
        finally:
            log.close()
        if self.on_start is not None:
            self.on_start(self)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> int | None:
        return self.process.poll() if self.process else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            if _wait_group_gone(pgid, self.process, wait):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)


def _wait_group_gone(pgid: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def wait_until(
    ready: Callable[[], bool],
    process: ManagedProcess,
    timeout: float,
    what: str,
) -> None:
    """Poll `ready` until true; fail fast if the process dies meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.exited()
        if code is not None:
            raise StackError(
                f"{process.name} exited with status {code} before {what}; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not up yet; keep polling
            pass
        time.sleep(0.1)
    raise StackError(
        f"{process.name} did not become ready ({what}) within {timeout:.0f}s; "
        f"log {process.log_path}:\n{process.log_tail()}"
    )
