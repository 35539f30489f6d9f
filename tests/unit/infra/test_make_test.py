"""`make test` runs the whole suite as two pytest runs side by side: between them every
test directory is run once, both must pass, and a run that collects nothing (pytest's
exit 5) fails the suite. Checked on a copy of the Makefile with a stand-in for pytest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
STUB = """#!/bin/sh
# Stand-in for `python`: records its arguments; the exit code is the test's choice.
echo "$@" >> calls.txt
case "$*" in *--ignore*) exit ${REST_EXIT:-0} ;; *) exit ${WAITING_EXIT:-0} ;; esac
"""


def make_test(tmp_path: Path, rest: int, waiting: int, args: str = ""
              ) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    stub = tmp_path / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    command = ["make", "-s", "-o", "setup", "test", f"VENV_PY={stub}"]
    if args:
        command.append(f"ARGS={args}")
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "REST_EXIT": str(rest),
                               "WAITING_EXIT": str(waiting)})
    calls = tmp_path / "calls.txt"
    return done, [line.split() for line in calls.read_text().splitlines()] if calls.exists() else []


def test_the_two_runs_cover_every_test_directory_once(tmp_path: Path) -> None:
    done, calls = make_test(tmp_path, 0, 0)
    assert done.returncode == 0, done.stdout + done.stderr
    waiting = next(c for c in calls if "--ignore" not in " ".join(c))
    rest = next(c for c in calls if "--ignore" in " ".join(c))
    waiting_dirs = [a for a in waiting[2:] if not a.startswith("-")]
    assert waiting[:2] == ["-m", "pytest"] and rest[:3] == ["-m", "pytest", "tests"]
    assert sorted(a.removeprefix("--ignore=") for a in rest[3:]) == sorted(waiting_dirs)
    for path in waiting_dirs:  # directories, or single test files
        assert path.startswith("tests/"), path
        assert (ROOT / path).is_dir() or (
            (ROOT / path).is_file() and Path(path).name.startswith("test_")), path


@pytest.mark.parametrize(("rest", "waiting"), [(1, 0), (0, 1), (5, 0), (0, 5), (2, 0)])
def test_a_failing_or_empty_run_fails_the_suite(tmp_path: Path, rest: int, waiting: int) -> None:
    done, calls = make_test(tmp_path, rest, waiting)
    assert len(calls) == 2
    assert done.returncode != 0, done.stdout + done.stderr
    if 5 in (rest, waiting):
        assert "collected no tests" in done.stderr


def test_args_are_one_run_of_the_selection(tmp_path: Path) -> None:
    done, calls = make_test(tmp_path, 0, 0, args="tests/unit -q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == [["-m", "infra.run_tests", "tests/unit", "-q"]]
