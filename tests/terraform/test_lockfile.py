"""The committed provider lock file agrees with versions.tf (infra/tfcheck/lockfile.py);
each rule is shown to fail on a broken copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.tfcheck import lockfile

TERRAFORM = Path(__file__).resolve().parents[2] / "terraform"


def _copy(tmp_path: Path, versions_edit: tuple[str, str] = ("", ""),
          lock_edit: tuple[str, str] = ("", "")) -> Path:
    shutil.copy(TERRAFORM / "versions.tf", tmp_path / "versions.tf")
    shutil.copy(TERRAFORM / lockfile.LOCK_FILE, tmp_path / lockfile.LOCK_FILE)
    for name, (old, new) in (("versions.tf", versions_edit), (lockfile.LOCK_FILE, lock_edit)):
        if old:
            path = tmp_path / name
            text = path.read_text()
            assert old in text, f"{name} no longer holds {old!r}: update the breakage"
            path.write_text(text.replace(old, new, 1))
    return tmp_path


def test_the_committed_lock_file_matches_versions_tf() -> None:
    assert lockfile.check(TERRAFORM) == []


@pytest.mark.parametrize(("versions_edit", "lock_edit", "expected"), [
    (("", ""), ('version     = "6.50.0"', 'version     = "6.51.0"'), "does not admit"),
    (('version = "~> 6.50.0"', 'version = "~> 6.51.0"'), ("", ""), "does not admit"),
    (("", ""), ('constraints = "~> 6.50.0"', 'constraints = "~> 6.50"'), "records constraints"),
    (("", ""), ('"zh:1f3513fc', '"h2:1f3513fc'), "neither zh: nor h1:"),
    (("", ""), ('provider "registry.terraform.io/hashicorp/time"',
                'provider "registry.terraform.io/hashicorp/clock"'), "is not locked"),
])
def test_a_broken_lock_file_is_reported(tmp_path: Path, versions_edit: tuple[str, str],
                                        lock_edit: tuple[str, str], expected: str) -> None:
    problems = lockfile.check(_copy(tmp_path, versions_edit, lock_edit))
    assert any(expected in p for p in problems), problems


def test_a_missing_lock_file_is_reported(tmp_path: Path) -> None:
    shutil.copy(TERRAFORM / "versions.tf", tmp_path / "versions.tf")
    assert any("is missing" in p for p in lockfile.check(tmp_path))


@pytest.mark.parametrize(("constraint", "version", "admitted"), [
    ("~> 6.50.0", "6.50.9", True), ("~> 6.50.0", "6.51.0", False),
    (">= 3.7, < 4", "3.7.2", True), (">= 3.7, < 4", "4.0.0", False),
    ("~> 3.7", "3.99.0", True), ("~> 3.7", "4.0.0", False), (">= 0.12, < 1", "0.11.9", False),
])
def test_constraints_read_as_terraform_reads_them(constraint: str, version: str,
                                                  admitted: bool) -> None:
    assert lockfile.admits(constraint, version) is admitted
