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
    # The accounts story (issue 20): each step is checked by the demo itself, which
    # exits 1 with "demo FAILED: <why>" when the system did not do what it says.
    for step in ("connects her whole account: her three calendars are followed",
                 "POST /v1/accounts -> 201", "followed: Work", "followed: Home",
                 "followed: primary", "shares a fourth calendar with her: it is followed",
                 "followed: Book club", "it is left, its feed kept", "status removed",
                 "calendar_removed (reason left_calendar_list)",
                 "status error, error reauthorization_required",
                 "POST /v1/accounts -> 200: the same account",
                 "created 'Offsite planning' (made while revoked)",
                 "created 'Plumber' (made while revoked)", "Book club stays removed",
                 "The app saw every feed entry once, in order, for every subscription"):
        assert step in out
    assert out.count("applied once each, in order") == 5  # four of hers, alice's one
    # The lifecycle entries reach the app too, in the same feed.
    assert out.count(", reauthorization_required:") == 3 and out.count(", recovered:") == 3
    assert "demo FAILED" not in done.stderr
    assert "updated" in out and "deleted" in out and "(instance of" in out
    assert "refresh_token" not in out + done.stderr  # sealed at once, never shown
    pids = [int(line.split()[0]) for line in (tmp_path / "stack.pids").read_text().splitlines()]
    assert len(pids) == 9  # four emulators, four functions, the consumer app
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
