"""Fixtures for the offline Terraform checks.

`broken_copy` copies terraform/ to a temporary directory and applies text
edits, so each test can prove a check fails when its rule is broken. The
provider schema and checkov are prepared by the set-up (`make setup`); when
they are missing the tests fail with the set-up step to run, never skip.
checkov is slow to start, so it runs once per session over the real tree and
every broken copy the checkov tests need (`CHECKOV_BREAKAGES`), side by side.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.tfcheck import checkov_run, hcl, schema_cache

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"

Edit = tuple[str, str, str]  # (file, text to find, replacement)

# Broken copies checkov must reject: name -> (edits, the check that must fail).
CHECKOV_BREAKAGES: dict[str, tuple[list[Edit], str]] = {
    "bucket_public_access": (
        [("functions.tf", '  public_access_prevention    = "enforced"\n', "")], "CKV_GCP_114"),
    "bucket_uniform_access": (
        [("functions.tf", "uniform_bucket_level_access = true",
          "uniform_bucket_level_access = false")], "CKV_GCP_29"),
    "webhook_skip_removed": (
        [("iam.tf", "  #checkov:skip=CKV_GCP_102:", "  # was a skip: ")], "CKV_GCP_102"),
    # One function resource serves all four, so its ingress skip covers them
    # all; tests/terraform/test_consistency.py holds each function's ingress.
    "function_ingress_skip_removed": (
        [("functions.tf", "  #checkov:skip=CKV_GCP_124:", "  # was a skip: ")], "CKV_GCP_124"),
    "act_as_project_wide": (
        [("extra.tf", "", 'resource "google_project_iam_member" "extra" {\n'
          '  project = var.project\n  role    = "roles/iam.serviceAccountUser"\n'
          '  member  = "serviceAccount:x@example.iam.gserviceaccount.com"\n}\n')],
        "CKV_GCP_41"),
    "topic_cmek_skip_removed": (
        [("pubsub.tf", "  #checkov:skip=CKV_GCP_83:Messages are", "  # was a skip: ")],
        "CKV_GCP_83"),
    "topic_public": (
        [("extra.tf", "", 'resource "google_pubsub_topic_iam_member" "extra" {\n'
          '  topic  = google_pubsub_topic.changes.name\n  role   = "roles/pubsub.subscriber"\n'
          '  member = "allUsers"\n}\n')],
        "CKV_GCP_99"),
}


def copy_with_edits(destination: Path, edits: list[Edit]) -> Path:
    """terraform/*.tf and *.tfvars copied to `destination`, each edit applied everywhere."""
    destination.mkdir(parents=True)
    for pattern in ("*.tf", "*.tfvars"):
        for path in TERRAFORM.glob(pattern):
            shutil.copy(path, destination / path.name)
    for name, old, new in edits:
        target = destination / name
        text = target.read_text() if target.exists() else ""
        if old:
            assert old in text, f"the edit expects {old!r} in {name}: update the test"
            text = text.replace(old, new)
        else:
            text += new
        target.write_text(text)
    return destination


@pytest.fixture
def broken_copy(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def make(*edits: Edit) -> Path:
        return copy_with_edits(tmp_path / f"terraform{next(counter)}", list(edits))

    return make


@pytest.fixture
def broken_code(tmp_path: Path) -> Callable[..., Path]:
    """A root holding main.py and a copy of functions/ with edits (file under
    functions/, text to find, replacement), for checks that read the code."""
    counter = iter(range(1000))

    def make(*edits: Edit) -> Path:
        root = tmp_path / f"code{next(counter)}"
        shutil.copytree(ROOT / "functions", root / "functions",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "main.py", root / "main.py")
        for name, old, new in edits:
            target = root / "functions" / name
            text = target.read_text()
            assert old in text, f"the edit expects {old!r} in functions/{name}: update the test"
            target.write_text(text.replace(old, new))
        return root

    return make


@pytest.fixture
def load_broken(broken_copy: Callable[..., Path]) -> Callable[..., hcl.Config]:
    def make(*edits: Edit) -> hcl.Config:
        return hcl.load(broken_copy(*edits))

    return make


@pytest.fixture(scope="session")
def real_config() -> hcl.Config:
    return hcl.load(TERRAFORM)


@pytest.fixture(scope="session")
def provider_schema() -> dict[str, Any]:
    try:
        return schema_cache.load()
    except schema_cache.SchemaCacheError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="session")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, checkov_run.Report]:
    """One checkov run: "real" is terraform/ itself, the rest CHECKOV_BREAKAGES."""
    try:
        checkov_run.executable()
    except checkov_run.CheckovUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    base = tmp_path_factory.mktemp("checkov")
    copy_with_edits(base / "real", [])
    for name, (edits, _check) in CHECKOV_BREAKAGES.items():
        copy_with_edits(base / name, edits)
    report = checkov_run.run(base)
    return {name: report.under(name) for name in ["real", *CHECKOV_BREAKAGES]}
