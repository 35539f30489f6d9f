"""`make demo` tells its story, exits 0 and leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.stack import ROOT

pytestmark = pytest.mark.e2e


def test_demo_story_runs_to_the_end_and_cleans_up(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "infra.demo", "--run-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert out.rstrip().endswith("demo finished")
    for chapter in ("connects the user's account through the API", "POST /v1/subscriptions -> 201",
                    "invalid_argument", "bootstraps", "as of feed position",
                    "field-level feed entries", "Pub/Sub pushes every change", "app: subscription",
                    "burst of 200 rapid edits", "replaced; no change is lost",
                    "caught by the safety net", "Status", "Everything stops"):
        assert chapter in out
    assert "updated" in out and "deleted" in out and "(instance of" in out
    assert "refresh_token" not in out + done.stderr  # sealed at once, never shown
    pids = [int(line.split()[0]) for line in (tmp_path / "stack.pids").read_text().splitlines()]
    assert len(pids) == 9  # four emulators, four functions, the consumer app
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
