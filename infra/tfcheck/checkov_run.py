"""Run checkov (from its own virtualenv) over terraform/ and read its verdict.

checkov pins packaging<24 and ships its own `hcl2` module, which would replace
python-hcl2 in .venv, hence .venv-checkov. It runs fully offline: no
download of Prisma Cloud guidelines (`--skip-download`, `BC_SKIP_MAPPING`).
Every inline skip must say why: `#checkov:skip=CKV_ID:reason`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = re.compile(r"#\s*checkov:skip=(?P<id>[A-Z0-9_]+)(?::(?P<reason>.*))?")
MIN_REASON = 30  # characters: a reason, not a shrug


class CheckovUnavailable(RuntimeError):
    """checkov is not installed where expected; the message says how to get it."""


@dataclass(frozen=True)
class Finding:
    check_id: str
    resource: str
    file: str  # relative to the scanned directory, leading "/"
    name: str


@dataclass
class Report:
    failed: list[Finding] = field(default_factory=list)
    skipped: list[Finding] = field(default_factory=list)
    parsing_errors: list[str] = field(default_factory=list)
    passed: int = 0

    def under(self, subdirectory: str) -> Report:
        """The part of a report about files under `/<subdirectory>/`."""
        prefix = f"/{subdirectory}/"
        return Report(
            failed=[f for f in self.failed if f.file.startswith(prefix)],
            skipped=[f for f in self.skipped if f.file.startswith(prefix)],
            parsing_errors=[p for p in self.parsing_errors if prefix in p],
        )


def executable() -> Path:
    explicit = os.environ.get("CALSYNC_CHECKOV")
    path = Path(explicit) if explicit else ROOT / ".venv-checkov" / "bin" / "checkov"
    if not path.exists():
        raise CheckovUnavailable(
            f"checkov is not installed at {path}: run the set-up (`make setup`), which "
            "creates .venv-checkov from requirements-checkov.txt")
    return path


def run(directory: Path) -> Report:
    """One checkov run over `directory` (every module below it)."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
           "LOG_LEVEL": "WARNING"}
    result = subprocess.run(
        [str(executable()), "--directory", str(directory), "--framework", "terraform",
         "--output", "json", "--compact", "--skip-download",
         "--download-external-modules", "false"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"checkov failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    parsed = json.loads(result.stdout)
    runs = parsed if isinstance(parsed, list) else [parsed]
    report = Report()
    for entry in runs:
        results = entry.get("results", {})
        report.failed += [_finding(c) for c in results.get("failed_checks", [])]
        report.skipped += [_finding(c) for c in results.get("skipped_checks", [])]
        report.parsing_errors += list(results.get("parsing_errors", []))
        report.passed += len(results.get("passed_checks", []))
    return report


def _finding(check: dict[str, object]) -> Finding:
    return Finding(str(check.get("check_id")), str(check.get("resource")),
                   str(check.get("file_path")), str(check.get("check_name")))


def problems(report: Report) -> list[str]:
    """Failed checks and parsing errors as messages; empty when clean."""
    found = [f"[checkov] {f.check_id} failed on {f.resource} ({f.file}): {f.name}"
             for f in report.failed]
    found += [f"[checkov] could not parse {error}" for error in report.parsing_errors]
    return found


def undocumented_skips(directory: Path) -> list[str]:
    """Inline skips without a reason of at least MIN_REASON characters."""
    found = []
    for path in sorted(directory.rglob("*.tf")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = SKIP.search(line)
            if match and len((match["reason"] or "").strip()) < MIN_REASON:
                found.append(f"[checkov] {path.name}:{number}: skip of {match['id']} does "
                             "not say why")
    return found
