"""Benchmarks cannot rot: every bench/*.py (not the `_` helpers) runs in --smoke mode.

Each runs as its own process, the way `make bench` runs it, with tiny sizes and the
same code path; it must exit 0 and print figures. A bench that takes `--stack-env`
reuses the session's local stack (DESIGN.md "Test budget") instead of starting
emulators of its own. Nothing here is timed: the timeout only stops a hung bench.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
TIMEOUT = 180.0  # a hung bench, not a slow one: smoke runs take seconds
GRACE = 30.0  # after SIGTERM, for the bench to stop the emulators it started
# The bench decides its emulators from --stack-env, not from whatever this process has.
ISOLATED = ("FIRESTORE_EMULATOR_HOST", "CLOUD_TASKS_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT",
            "CALENDAR_API_ENDPOINT", "CALENDAR_EMULATOR_CONTROL")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ISOLATED and not k.startswith("CALSYNC_")}


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run in a process group of its own; on timeout SIGTERM (the benches then stop
    their emulators), then SIGKILL whatever is left."""
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=GRACE)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
        pytest.fail(f"{' '.join(args)} still running after {timeout:.0f}s\n"
                    f"--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def test_every_bench_is_collected() -> None:
    assert {"emulator_list.py", "full_sync.py", "incremental.py", "renewal.py",
            "end_to_end.py", "outage.py", "scale.py", "safety_net.py"} <= set(BENCHES), BENCHES


# Lines a bench's smoke run must print besides figures: the ratios its issue asks for.
EXPECTED = {"end_to_end.py": ("calsync / bare path: p95", "floor / bare path: p95",
                              "calsync / DESIGN floor: p95")}


# The summary line of bench/scale.py, which other tools read (issue 19).
SCALE_LINE = re.compile(
    r"^scale \d+ calendars: quiet \d+\.\d\d calls/calendar/day, peak \d+ calls/min "
    r"\(quota \d+\), hottest user \d+ calls/min, staleness bound \d+ s, max staleness at "
    r"20% drop \d+ s, hottest doc \d+\.\d\d writes/s$", re.M)


def test_scale_prints_one_summary_line_per_size() -> None:
    result = _run(["bench/scale.py", "--smoke"], TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = SCALE_LINE.findall(result.stdout)
    assert [line.split()[1] for line in lines] == ["10000", "1000000"], result.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHES)
def test_bench_smoke(bench: str, request: pytest.FixtureRequest) -> None:
    script = f"bench/{bench}"
    usage = _run([script, "--help"], 60)
    assert usage.returncode == 0, f"{script} --help failed:\n{usage.stderr[-3000:]}"
    assert "--smoke" in usage.stdout, (
        f"{script} has no --smoke option (its --help lists none): every benchmark must take "
        f"--smoke (tiny sizes, a few seconds, same code path), so `make test` catches a "
        f"broken benchmark; see bench/_stack.py add_bench_args")
    args = [script, "--smoke"]
    if "--stack-env" in usage.stdout:
        stack = request.getfixturevalue("local_stack")
        stack_env = Path(stack.config.run_dir) / "stack.env"
        assert stack_env.is_file(), f"the session's local stack wrote no {stack_env}"
        args += ["--stack-env", str(stack_env)]

    result = _run(args, TIMEOUT)

    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-3000:]}")
    assert result.stdout.strip() and re.search(r"\d", result.stdout), (
        f"{' '.join(args)} printed no figures\n--- stderr\n{result.stderr[-3000:]}")
    missing = [line for line in EXPECTED.get(bench, ()) if line not in result.stdout]
    assert not missing, f"{' '.join(args)} printed no {missing}\n{result.stdout[-3000:]}"
