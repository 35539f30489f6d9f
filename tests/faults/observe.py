"""Watching a stack converge: renewer runs on wall time (as Cloud Scheduler would),
the convergence loop, and summaries of what the functions logged."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any


class RenewerLoop:
    """POSTs the renewer every `interval` seconds in a thread; tallies the answers."""

    def __init__(self, url: str, interval: float, tally: Counter[str]) -> None:
        self.url, self.interval, self.tally = url, interval, tally
        self.runs = 0
        self.before_next: list[Callable[[], None]] = []  # run just before the next POST
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="renewer-loop", daemon=True)

    def start(self) -> RenewerLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=150)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            while self.before_next:
                self.before_next.pop(0)()
            status, _ = renew(self.url)
            self.runs += 1
            self.tally[f"renewer_http_{status}"] += 1


def renew(url: str) -> tuple[int, dict[str, Any]]:
    """One renewer run (what Cloud Scheduler triggers): its status and report."""
    request = urllib.request.Request(url, method="POST", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status), dict(json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as err:
        return int(err.code), {}
    except (OSError, ValueError):
        return 0, {}


def converge(check: Callable[[dict[str, Any]], list[str]],
             renew_once: Callable[[], tuple[int, dict[str, Any]]],
             max_runs: int, pause: float = 1.0, tally: Counter[str] | None = None,
             clean_samples: int = 2) -> tuple[int, list[str]]:
    """Renewer runs (as Cloud Scheduler triggers them) until `check` finds nothing on
    `clean_samples` consecutive samples, each after a run; (runs used, last problems).

    `check` gets the last run's report (for its continuation); `renew_once` returns
    (status, report) as `renew` does; statuses go to `tally`. Two consecutive clean
    samples: a state that is clean once, between two pieces of work, is not quiet.
    """
    problems: list[str] = []
    clean = 0
    for run in range(1, max_runs + 1):
        status, report = renew_once()
        if tally is not None:
            tally[f"quiet_renewer_http_{status}"] += 1
        problems = check(report)
        clean = 0 if problems else clean + 1
        if clean >= clean_samples:
            return run, []
        time.sleep(pause)
    return max_runs, problems or [f"clean on {clean} consecutive samples only"]


def tally_text(tally: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tally.items()))


def log_summary(run_dir: Path) -> str:
    """What the functions logged, counted: (message, outcome) and error lines per function."""
    parts = []
    for path in sorted(run_dir.glob("function-*.log")):
        counts: Counter[str] = Counter()
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                if line.startswith("Traceback"):
                    counts["traceback"] += 1
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            message = str(data.get("message"))
            if message == "renewer run":
                for key in ("renewed", "failed", "swept", "safety_net", "continued"):
                    counts[f"renewer.{key}"] += int(data.get(key) or 0)
                continue
            label = message + (f"/{data['outcome']}" if data.get("outcome") else "")
            if data.get("severity") == "ERROR" and data.get("error"):
                label += f" [{str(data['error'])[:60]}]"
            counts[label] += 1
        parts.append(f"{path.stem}: {tally_text(counts)}")
    return "\n".join(parts)


def recent_runs(run_dir: Path, problems: list[str], last: int = 6) -> str:
    """The last sync-run log lines of each subscription named in `problems`."""
    prefixes = sorted({p.split(":", 1)[0].split("/", 1)[1] for p in problems
                       if "/" in p.split(":", 1)[0]})
    path = run_dir / "function-sync_worker.log"
    if not prefixes or not path.exists():
        return ""
    runs: dict[str, list[str]] = {prefix: [] for prefix in prefixes}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{") or "sync run" not in line:
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        sub = str(data.get("subscription") or "")
        for prefix in prefixes:
            if sub.startswith(prefix):
                runs[prefix].append(f"{data.get('time')} {data.get('outcome')} "
                                    f"{data.get('mode')} {data.get('error') or ''}".strip())
    return "\n".join(f"{prefix}: " + " | ".join(lines[-last:]) for prefix, lines in runs.items())


def keep_logs(run_dir: Path) -> None:
    """Copy the stack's logs to $CALSYNC_TEST_LOGS (if set): pytest's tmp dirs rotate."""
    import os
    import shutil

    target = os.environ.get("CALSYNC_TEST_LOGS")
    if target:
        shutil.copytree(run_dir, Path(target) / run_dir.name, dirs_exist_ok=True)
