"""The stack launcher itself: it starts everything, fails clearly, and leaves nothing running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infra.local.processes import StackError, free_port
from infra.local.stack import ROOT, Stack, StackConfig

pytestmark = pytest.mark.e2e

REQUIRED_KEYS = {
    "FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "CALENDAR_API_ENDPOINT",
    "CALENDAR_EMULATOR_CONTROL", "CLOUD_TASKS_EMULATOR_HOST", "CALSYNC_WEBHOOK_URL",
    "CALSYNC_WORKER_URL", "CALSYNC_RENEWER_URL", "CALSYNC_API_URL",
    "PUBSUB_EMULATOR_HOST", "CALSYNC_PUBSUB_TOPIC",
}


def _alive(pid: int) -> bool:
    """True while any process of the group `pid` leads still exists."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recorded_pids(run_dir: Path) -> list[int]:
    text = (run_dir / "stack.pids").read_text()
    return [int(line.split()[0]) for line in text.splitlines() if line.strip()]


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_stack_runs_every_component_and_stops_them_all(local_stack: Stack) -> None:
    env = local_stack.env
    assert set(env) >= REQUIRED_KEYS
    written = _read_env(Path(env["CALSYNC_RUN_DIR"]) / "stack.env")
    assert written == env
    assert _status(f"http://{env['FIRESTORE_EMULATOR_HOST']}/") == 200
    assert _status(env["CALENDAR_EMULATOR_CONTROL"] + "health") == 200
    for key in ("CALSYNC_WEBHOOK_URL", "CALSYNC_WORKER_URL", "CALSYNC_RENEWER_URL"):
        assert _status(env[key]) < 600  # answered over HTTP at all
    pids = local_stack.pids()
    assert len(pids) == 9 and all(_alive(pid) for pid in pids)


def test_taken_port_fails_clearly_and_cleans_up(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        stack = Stack(StackConfig(run_dir=tmp_path, tasks_port=taken))
        with pytest.raises(StackError, match=f"port {taken} .* already in use"):
            stack.start()
    started = _recorded_pids(tmp_path)
    assert started, "the Firestore emulator should have started before the clash"
    assert not any(_alive(pid) for pid in started)
    assert not (tmp_path / "stack.env").exists()


def test_component_that_cannot_start_is_reported_and_everything_stops(tmp_path: Path) -> None:
    broken = tmp_path / "main.py"
    broken.write_text("this is not python\n")
    stack = Stack(StackConfig(run_dir=tmp_path, functions_source=broken, startup_timeout=30))
    with pytest.raises(StackError, match="function webhook exited"):
        stack.start()
    started = _recorded_pids(tmp_path)
    assert len(started) == 5  # four emulators and the function that died
    assert not any(_alive(pid) for pid in started)


def test_up_then_sigint_exits_zero_leaving_nothing(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local", "up", "--run-dir", str(tmp_path),
         "--worker-port", str(free_port())],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.strip() == "ready":
                break
        assert "ready" in lines, "\n".join(lines)
        assert set(_read_env(tmp_path / "stack.env")) >= REQUIRED_KEYS
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "[stack] stopped" in rest
    started = _recorded_pids(tmp_path)
    assert len(started) == 9
    assert not any(_alive(pid) for pid in started)
