"""The CLI as a process: a real Ctrl-C and real missing credentials, no traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CALSYNC_", "FIRESTORE_", "CLOUD_TASKS_", "GOOGLE_"))}
    # No metadata server is ever asked: anything but loopback is refused.
    env.update({"GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
                "GOOGLE_CLOUD_PROJECT": "calsync-cli", **extra})
    return env


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "functions.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_while_waiting_on_firestore_exits_130_without_a_traceback() -> None:
    with socket.socket() as silent:  # accepts, never answers: the CLI waits on it
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        process = _cli("changes", "sub-1", env=_env(FIRESTORE_EMULATOR_HOST=host))
        connection, _ = silent.accept()  # the CLI is now inside its first read
        try:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
        finally:
            connection.close()
    assert process.returncode == 130, err
    assert out == "" and err == "error: interrupted\n"


def test_missing_application_default_credentials_is_one_line_with_the_fix(
    tmp_path: Path,
) -> None:
    env = _env(GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "absent.json"))
    out, err = _cli("changes", "sub-1", env=env).communicate(timeout=60)
    assert out == "" and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("error: no Google credentials found")
    assert "gcloud auth application-default login" in err
    json_run = _cli("status", "--json", env=env)
    out, err = json_run.communicate(timeout=60)
    assert json_run.returncode == 1 and err == ""
    assert '"code": "failed_precondition"' in out and "Traceback" not in out
