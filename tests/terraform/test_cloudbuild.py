"""cloudbuild.yaml: pinned images, apply on main as the deployer only, no secret
on any command line, the tests on Python 3.11 with a virtualenv later steps can use,
providers locked before init, builds of main serialised on the state lock."""

from __future__ import annotations

import pytest

from infra.tfcheck import cloudbuild, hcl

from .conftest import ROOT

TEXT = (ROOT / "cloudbuild.yaml").read_text()
PLAN_VAR = "-var=project=${_PROJECT}\n        else"
DEPLOYER_GUARD = (
    '          if [ "$$ACTING" != "${_DEPLOYER_SA}" ]; then\n'
    '            echo "refusing to apply as $$ACTING: only ${_DEPLOYER_SA} applies" >&2\n'
    "            exit 1\n          fi\n")


def sensitive(config: hcl.Config) -> set[str]:
    return {name for name, spec in config.variables.items() if spec.get("sensitive") is True}


def test_cloudbuild_follows_the_rules(real_config: hcl.Config) -> None:
    assert cloudbuild.problems(TEXT, sensitive(real_config)) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("hashicorp/terraform:1.11.4", "hashicorp/terraform:latest", "is not pinned"),
    ("node:20.18.1-bookworm", "node", "is not pinned"),
    ('if [ "${BRANCH_NAME}" = "main" ]; then\n          ACTING',
     "if true; then\n          ACTING", "must be guarded"),
    (DEPLOYER_GUARD, "", "must refuse to run as anyone but ${_DEPLOYER_SA}"),
    ("  _DEPLOYER_SA: calsync-deployer@${PROJECT_ID}.iam.gserviceaccount.com\n", "",
     "substitution _DEPLOYER_SA is missing"),
    ('make test PYTHON="$$PYTHON311"', "true", "no step runs 'make test'"),
    ("-refresh=false -lock=false", "-refresh=false", "no step runs '-lock=false'"),
    # secrets never on a command line, settings never overridden by the pipeline
    (PLAN_VAR, "-var=project=${_PROJECT} -var=oauth_client_secret=$$OAUTH\n        else",
     "-var oauth_client_secret passes a secret"),
    (PLAN_VAR, "-var=project=${_PROJECT} -var 'credential_keys=k1:abc'\n        else",
     "-var credential_keys passes a secret"),
    ("    - CHECKPOINT_DISABLE=1\n",
     "    - CHECKPOINT_DISABLE=1\n    - TF_VAR_channel_token_keys=x\n",
     "TF_VAR_ channel_token_keys passes a secret"),
    (PLAN_VAR, "-var=project=${_PROJECT} -var=region=europe-west1\n        else",
     "-var region overrides the committed terraform/calsync.auto.tfvars"),
    # the deployed runtime and a virtualenv later steps can use
    ("assert sys.version_info[:2] == (3, 11), sys.version", "assert True",
     "must build the virtualenv on Python 3.11"),
    ("  - id: offline-checks\n    name: ${_CLOUD_SDK_IMAGE}",
     "  - id: offline-checks\n    name: ${_NODE_IMAGE}",
     "step offline-checks runs .venv on ${_NODE_IMAGE}"),
    # providers locked before init, for the platforms in use
    ('args: ["providers", "lock", "-platform=linux_amd64", "-platform=darwin_arm64"]',
     'args: ["version"]', "no step runs `terraform providers lock`"),
    ('"-platform=linux_amd64", "-platform=darwin_arm64"]', '"-platform=linux_amd64"]',
     "does not lock the providers for -platform=darwin_arm64"),
    ('waitFor: ["provider-lock", "terraform-fmt", "offline-checks"]',
     'waitFor: ["terraform-fmt", "offline-checks"]',
     "step terraform-init runs terraform init without waiting for step provider-lock"),
    # builds of main wait for each other's state lock
    ("terraform plan -input=false -lock-timeout=${_TF_LOCK_TIMEOUT} -out=",
     "terraform plan -input=false -out=", "`terraform plan -input=false -out=calsync.tfplan"),
    ("terraform apply -input=false -lock-timeout=${_TF_LOCK_TIMEOUT} calsync.tfplan",
     "terraform apply -input=false calsync.tfplan", "does not wait for the state lock"),
])
def test_cloudbuild_rule_fails_when_broken(old: str, new: str, expected: str) -> None:
    assert old in TEXT
    found = cloudbuild.problems(TEXT.replace(old, new))
    assert any(expected in problem for problem in found), found


def test_a_sensitive_variable_is_a_secret_whatever_its_name() -> None:
    text = TEXT.replace(PLAN_VAR, "-var=project=${_PROJECT} -var=webhook_hmac=abc\n        else")
    found = cloudbuild.problems(text, {"webhook_hmac"})
    assert any("-var webhook_hmac passes a secret" in p for p in found), found


def test_a_secret_env_value_is_a_secret_whatever_the_variable() -> None:
    text = TEXT.replace(PLAN_VAR, "-var=project=$$PROJ\n        else").replace(
        "timeout: 3600s\n", "timeout: 3600s\navailableSecrets:\n  secretManager:\n"
        "    - versionName: projects/p/secrets/s/versions/1\n      env: X\n"
        "    - PROJ: projects/p/secrets/s/versions/1\n")
    found = cloudbuild.problems(text)
    assert any("-var project takes its value from a secretEnv" in p for p in found), found


PLAN_STEP = "  - id: terraform-plan\n    name: ${_TERRAFORM_IMAGE}\n"


def test_terraform_given_a_secret_env_is_refused() -> None:
    assert PLAN_STEP in TEXT
    text = TEXT.replace(PLAN_STEP, PLAN_STEP + "    secretEnv: [OAUTH]\n")
    found = cloudbuild.problems(text)
    assert "[cloudbuild] step terraform-plan gives Terraform a secretEnv" in found, found
