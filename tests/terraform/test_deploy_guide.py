"""README's deploy guide matches terraform/ and cloudbuild.yaml (tfcheck/deploy_guide.py):
the deployer may grant exactly the project-level roles Terraform grants, the
triggers run as their own accounts with comment control for forks, the state
moves to the pipeline's bucket, the Pub/Sub agent exists before the apply,
and every alert is explained. Each rule is proven to fail when broken."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.tfcheck import deploy_guide, hcl

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
CLOUDBUILD = (ROOT / "cloudbuild.yaml").read_text()
CONDITION_ROLES = ("['roles/datastore.user', 'roles/logging.logWriter', "
                   "'roles/storage.objectViewer']")

README_BREAKAGES: dict[str, tuple[str, str, str]] = {
    "condition allows a role Terraform does not grant": (
        CONDITION_ROLES, CONDITION_ROLES.replace("]", ", 'roles/owner']"),
        "the deployer's projectIamAdmin condition allows roles/owner"),
    "condition misses a role Terraform grants": (
        CONDITION_ROLES, CONDITION_ROLES.replace("'roles/datastore.user', ", ""),
        "terraform/ grants roles/datastore.user at project level, but the deployer's"),
    "projectIamAdmin unconditioned": (
        "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])", "true",
        "no IAM condition on modifiedGrantsByRole"),
    "deployer role missing from the commands": (
        " pubsub.admin \\\n", " \\\n",
        "the deployer needs roles/pubsub.admin"),
    "trigger without its account": (
        "     --service-account=projects/$PROJECT/serviceAccounts/calsync-planner@",
        "     --substitutions=_X=projects/$PROJECT/serviceAccounts/calsync-planner@",
        "trigger calsync-pull-requests has no --service-account"),
    "forks build unasked": (
        "     --comment-control=COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY \\\n", "",
        "pull-request trigger calsync-pull-requests runs builds from forks unasked"),
    "state migrated under another prefix": (
        '-backend-config="prefix=calsync"', '-backend-config="prefix=terraform"',
        "the state migration's prefix is not the pipeline's _TF_STATE_PREFIX"),
    "no state migration": (
        "terraform init -migrate-state", "terraform init",
        "no `terraform init -migrate-state` step"),
    "service agent created after the apply": (
        "   gcloud beta services identity create --service=pubsub.googleapis.com "
        "--project=my-project\n", "",
        "create the Pub/Sub service agent"),
    "an alert nobody explains": (
        "- **calsync: sync queue backing up**", "- **the queue**",
        "no entry for 'calsync: sync queue backing up'"),
}


def test_the_deploy_guide_matches_terraform(real_config: hcl.Config) -> None:
    assert deploy_guide.check(real_config, README, CLOUDBUILD) == []


@pytest.mark.parametrize("name", sorted(README_BREAKAGES))
def test_deploy_guide_check_fails_on_a_broken_readme(name: str, real_config: hcl.Config) -> None:
    old, new, expected = README_BREAKAGES[name]
    assert old in README, f"the edit expects {old!r} in README.md: update the test"
    found = deploy_guide.check(real_config, README.replace(old, new), CLOUDBUILD)
    assert any(expected in problem for problem in found), found


def test_a_new_project_level_grant_needs_the_deployer_condition(
    load_broken: Callable[..., hcl.Config],
) -> None:
    config = load_broken(("extra.tf", "", 'resource "google_project_iam_member" "extra" {\n'
                          '  project = var.project\n  role    = "roles/monitoring.viewer"\n'
                          '  member  = google_service_account.this["renewer"].member\n}\n'))
    found = deploy_guide.check(config, README, CLOUDBUILD)
    assert any("terraform/ grants roles/monitoring.viewer at project level" in p
               for p in found), found


def test_the_pipeline_prefix_is_what_the_guide_migrates_to(real_config: hcl.Config) -> None:
    cloudbuild = CLOUDBUILD.replace("_TF_STATE_PREFIX: calsync", "_TF_STATE_PREFIX: prod")
    found = deploy_guide.check(real_config, README, cloudbuild)
    assert any("_TF_STATE_PREFIX ('prod')" in p for p in found), found
