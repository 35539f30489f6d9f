"""README's deploy guide against terraform/ and cloudbuild.yaml: a newcomer can bootstrap.

- the deployer's Project IAM Admin is conditioned on exactly the roles
  terraform/ grants at project level (`modifiedGrantsByRole`), and the loop
  that grants the deployer's other roles covers the "Who can apply" table;
- every `gcloud builds triggers create` names its `--service-account`, and the
  pull-request trigger has comment control or approval (forks run nothing
  on their own);
- the state migration uses the bucket and prefix the pipeline inits with;
- the first-apply steps create the Pub/Sub service agent before the apply;
- the "Logs and alerts" list names every alert policy terraform/ creates.
"""

from __future__ import annotations

import re

from infra.tfcheck import hcl
from infra.tfcheck.alert_policies import ALERT
from infra.tfcheck.iam_check import grants

_CONDITION = re.compile(
    r"api\.getAttribute\('iam\.googleapis\.com/modifiedGrantsByRole', \[\]\)"
    r"\.hasOnly\(\[(?P<roles>[^\]]*)\]\)")
_ROLE_LOOP = re.compile(r"for ROLE in (?P<roles>[^;]*);")
_TABLE_ROLE = re.compile(r"^\| `(roles/[\w.]+)`", re.M)
_TRIGGER = re.compile(r"gcloud builds triggers create .*?(?=\n\s*\n|\n\s*gcloud|\n\s*```)", re.S)
_SUBSTITUTION = re.compile(r"^\s+(?P<key>_[A-Z0-9_]+):\s*(?P<value>\S+)\s*$", re.M)


def section(readme: str, title: str) -> str:
    """The text of a `## title` or `### title` section (up to the next heading of
    the same or a higher level)."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", readme, re.M)
    if match is None:
        return ""
    level = len(match.group(1))
    rest = readme[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def check(config: hcl.Config, readme: str, cloudbuild: str) -> list[str]:
    deploy = section(readme, "Deploy")
    return [*_deployer_roles(config, deploy), *_triggers(deploy),
            *_state(deploy, cloudbuild), *_first_apply(section(readme, "First apply on a "
                                                                 "fresh project")),
            *_alerts(config, section(readme, "Logs and alerts"))]


def project_roles(config: hcl.Config) -> set[str]:
    return {g.role for g in grants(config)
            if g.scope == "project" or g.scope.startswith("project if ")}


def _deployer_roles(config: hcl.Config, deploy: str) -> list[str]:
    problems: list[str] = []
    condition = _CONDITION.search(deploy)
    if condition is None:
        return ["[readme] Deploy: no IAM condition on modifiedGrantsByRole for the deployer's "
                "roles/resourcemanager.projectIamAdmin"]
    listed = set(re.findall(r"'([^']+)'", condition["roles"]))
    wanted = project_roles(config)
    for role in sorted(wanted - listed):
        problems.append(f"[readme] Deploy: terraform/ grants {role} at project level, but the "
                        "deployer's projectIamAdmin condition does not allow it: applies "
                        "from the pipeline would be refused")
    for role in sorted(listed - wanted):
        problems.append(f"[readme] Deploy: the deployer's projectIamAdmin condition allows "
                        f"{role}, which terraform/ never grants at project level")
    loop = _ROLE_LOOP.search(deploy)
    looped = {f"roles/{r}" for r in loop["roles"].split() if r != "\\"} if loop else set()
    # "Who can apply": the first cell of each row (build accounts also write logs)
    table = {role for line in deploy.splitlines() if _TABLE_ROLE.match(line)
             for role in re.findall(r"`(roles/[\w.]+)`", line.split("|")[1])}
    table.add("roles/logging.logWriter")
    for role in sorted(table - looped - {"roles/resourcemanager.projectIamAdmin"}):
        problems.append(f"[readme] Deploy: the deployer needs {role} (\"Who can apply\"), "
                        "but the commands that create it do not grant it")
    return problems


def _triggers(deploy: str) -> list[str]:
    commands = [m.group(0) for m in _TRIGGER.finditer(deploy)]
    if len(commands) < 2:
        return ["[readme] Deploy: expected the two `gcloud builds triggers create` commands "
                "(main, pull requests)"]
    problems = []
    for command in commands:
        name = re.search(r"--name=(\S+)", command)
        label = name.group(1) if name else command[:40]
        if "--service-account=" not in command:
            problems.append(f"[readme] Deploy: trigger {label} has no --service-account (it "
                            "would build as Cloud Build's default account)")
        if "--pull-request-pattern" in command and not (
                "--comment-control=COMMENTS_ENABLED" in command
                or "--require-approval" in command):
            problems.append(f"[readme] Deploy: pull-request trigger {label} runs builds from "
                            "forks unasked: add --comment-control or --require-approval")
    return problems


def _state(deploy: str, cloudbuild: str) -> list[str]:
    migrate = re.search(r"terraform init -migrate-state[^`]*", deploy)
    if migrate is None:
        return ["[readme] Deploy: no `terraform init -migrate-state` step moving the first "
                "apply's local state into the pipeline's bucket"]
    substitutions = dict(_SUBSTITUTION.findall(cloudbuild))
    prefix = re.search(r'prefix=([^"\s]+)', migrate.group(0))
    bucket = re.search(r'bucket=([^"\s]+)', migrate.group(0))
    problems = []
    if prefix is None or prefix.group(1) != substitutions.get("_TF_STATE_PREFIX"):
        problems.append("[readme] Deploy: the state migration's prefix is not the pipeline's "
                        f"_TF_STATE_PREFIX ({substitutions.get('_TF_STATE_PREFIX')!r})")
    suffix = str(substitutions.get("_TF_STATE_BUCKET", "")).replace("${PROJECT_ID}", "")
    if bucket is None or not bucket.group(1).endswith(suffix):
        problems.append("[readme] Deploy: the state migration's bucket is not the pipeline's "
                        f"_TF_STATE_BUCKET (PROJECT{suffix})")
    return problems


def _first_apply(steps: str) -> list[str]:
    identity = steps.find("gcloud beta services identity create --service=pubsub.googleapis.com")
    apply = steps.find("terraform apply")
    if identity < 0 or apply < 0 or identity > apply:
        return ["[readme] First apply: create the Pub/Sub service agent (`gcloud beta services "
                "identity create --service=pubsub.googleapis.com`) before `terraform apply`: "
                "the dead-letter and push grants name it"]
    return []


def _alerts(config: hcl.Config, text: str) -> list[str]:
    problems = []
    for alert in config.resources(ALERT):
        name = str(alert.body.get("display_name", ""))
        if f"**{name}**" not in text:
            problems.append(f"[readme] Logs and alerts: no entry for {name!r} "
                            f"({alert.address}): what it means and what to do")
    return problems
