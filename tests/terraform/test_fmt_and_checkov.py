"""`terraform fmt -check` and checkov over terraform/, each proven to fail when broken."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from infra.tfcheck import checkov_run, fmt

from .conftest import CHECKOV_BREAKAGES, TERRAFORM

# Each skip in terraform/ and why it is acceptable (the reason is also inline).
DOCUMENTED_SKIPS = {
    ("CKV_GCP_62", "google_storage_bucket.source"),  # access logs of a source-only bucket
    ("CKV_GCP_84", "google_artifact_registry_repository.functions"),  # CMEK for built images
    # webhook: Google pushes from outside; api: ID token of an api_invokers member
    ("CKV_GCP_124", "google_cloudfunctions2_function.this"),
    ("CKV_GCP_102", "google_cloud_run_service_iam_member.webhook_public[0]"),  # allUsers
    # CMEK on the topics: copies of change entries the API serves anyway
    ("CKV_GCP_83", "google_pubsub_topic.changes"),
    ("CKV_GCP_83", "google_pubsub_topic.dead_letter"),
}


def test_terraform_is_formatted() -> None:
    assert fmt.problems(TERRAFORM) == []


def test_fmt_check_fails_on_unformatted_file(broken_copy: Callable[..., Path]) -> None:
    copy = broken_copy(("tasks.tf", "  name     = ", "  name = "))
    found = fmt.problems(copy)
    assert len(found) == 1 and "tasks.tf" in found[0]


def test_checkov_passes_with_only_documented_skips(
    checkov_reports: dict[str, checkov_run.Report],
) -> None:
    real = checkov_reports["real"]
    assert checkov_run.problems(real) == []
    assert {(f.check_id, f.resource) for f in real.skipped} == DOCUMENTED_SKIPS


def test_every_skip_says_why() -> None:
    assert checkov_run.undocumented_skips(TERRAFORM) == []


def test_skip_without_reason_is_reported(broken_copy: Callable[..., Path]) -> None:
    copy = broken_copy(("functions.tf", "#checkov:skip=CKV_GCP_62:Holds only",
                        "#checkov:skip=CKV_GCP_62:fine\n  # Holds only"))
    found = checkov_run.undocumented_skips(copy)
    assert len(found) == 1 and "CKV_GCP_62" in found[0]


@pytest.mark.parametrize("name", sorted(CHECKOV_BREAKAGES))
def test_checkov_fails_on_broken_copy(
    name: str, checkov_reports: dict[str, checkov_run.Report]
) -> None:
    expected = CHECKOV_BREAKAGES[name][1]
    failed = {f.check_id for f in checkov_reports[name].failed}
    assert expected in failed, checkov_run.problems(checkov_reports[name])
