"""cloudbuild.yaml: pinned images, project/region substitutions, apply on main only."""

from __future__ import annotations

import pytest

from infra.tfcheck import cloudbuild

from .conftest import ROOT

TEXT = (ROOT / "cloudbuild.yaml").read_text()


def test_cloudbuild_follows_the_rules() -> None:
    assert cloudbuild.problems(TEXT) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("hashicorp/terraform:1.11.4", "hashicorp/terraform:latest", "is not pinned"),
    ("node:20.18.1-bookworm", "node", "is not pinned"),
    ('if [ "${BRANCH_NAME}" = "main" ]; then', "if true; then", "must be guarded"),
    ("  _REGION: us-central1\n", "", "substitution _REGION is missing"),
    ("make test", "true", "no step runs 'make test'"),
])
def test_cloudbuild_rule_fails_when_broken(old: str, new: str, expected: str) -> None:
    assert old in TEXT
    found = cloudbuild.problems(TEXT.replace(old, new))
    assert any(expected in problem for problem in found), found
