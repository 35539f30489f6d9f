"""IAM rules for terraform/: the least-privilege matrix and the rules behind it.

- every grant outside Secret Manager is in EXPECTED_GRANTS, and every entry of
  it is granted (secret grants are checked against the functions' secrets);
- no basic roles, no authoritative policies, no public member but the
  webhook's invoker, no actAs or token creation project-wide, no default
  service account;
- builds: the build account reads Google's gcf-v2-sources-* buckets
  (project-level grant conditioned on the bucket name) and the functions wait
  for IAM propagation (a time_sleep after the build grants, whose triggers
  name those grants so that later changes wait too);
- one invoker account per target, and every account that enqueues tasks may
  act as the worker's invoker.

Google's Pub/Sub service agent is named `agent:pubsub` in the matrix; the
Pub/Sub rules (who publishes, who subscribes where) are in `pubsub_check`.
"""

from __future__ import annotations

import re
from typing import Any

from infra.tfcheck import hcl

FUNCTION = "google_cloudfunctions2_function"
SERVICE_ACCOUNT = "google_service_account"

PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
IMPERSONATION_ROLES = {"roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator",
                       "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountKeyAdmin"}
BROAD_SCOPES = {"project", "folder", "organization"}
DEFAULT_ACCOUNTS = ("-compute@developer.gserviceaccount.com", "@appspot.gserviceaccount.com",
                    "@cloudbuild.gserviceaccount.com")

GCF_SOURCES_CONDITION = 'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-")'
GCF_SOURCES_SCOPE = f"project if {GCF_SOURCES_CONDITION}"
OBJECT_READ_ROLES = {"roles/storage.objectViewer", "roles/storage.objectAdmin",
                     "roles/storage.admin"}

# Google's Pub/Sub service agent, service-<number>@gcp-sa-pubsub.iam.gserviceaccount.com.
PUBSUB_AGENT = "agent:pubsub"
_PUBSUB_AGENT_DOMAIN = "@gcp-sa-pubsub.iam.gserviceaccount.com"

# Each function's service -> the one account that may invoke it.
INVOKERS = {"worker": "sa:worker_invoker", "renewer": "sa:renewer_invoker"}

# Every grant outside Secret Manager: (scope, role, member). Scopes name what
# is granted on: "sa:x" is google_service_account instance x.
_RUNTIME = ("sa:webhook", "sa:worker", "sa:renewer", "sa:api")
EXPECTED_GRANTS: frozenset[tuple[str, str, str]] = frozenset(
    {("project", "roles/datastore.user", sa) for sa in _RUNTIME}
    | {("queue:sync", "roles/cloudtasks.enqueuer", sa) for sa in _RUNTIME}
    | {("service_account:worker_invoker", "roles/iam.serviceAccountUser", sa)
       for sa in _RUNTIME}
    | {("service_account:delegation", "roles/iam.serviceAccountTokenCreator", sa)
       for sa in ("sa:worker", "sa:renewer")}
    | {
        # The renewer alone queues renewer tasks (shard fan-out, continuations).
        ("queue:renewer", "roles/cloudtasks.enqueuer", "sa:renewer"),
        ("service_account:renewer_invoker", "roles/iam.serviceAccountUser", "sa:renewer"),
        ("service:worker", "roles/run.invoker", "sa:worker_invoker"),
        ("service:renewer", "roles/run.invoker", "sa:renewer_invoker"),
        ("service:webhook", "roles/run.invoker", "allUsers"),
        ("service:api", "roles/run.invoker", "var.api_invokers"),
        ("project", "roles/logging.logWriter", "sa:builder"),
        (GCF_SOURCES_SCOPE, "roles/storage.objectViewer", "sa:builder"),
        ("repository:functions", "roles/artifactregistry.writer", "sa:builder"),
        ("bucket:source", "roles/storage.objectViewer", "sa:builder"),
        # Pub/Sub (pubsub.tf; the rules behind these are in pubsub_check.py).
        ("topic:changes", "roles/pubsub.publisher", "sa:worker"),
        ("topic:dead_letter", "roles/pubsub.publisher", PUBSUB_AGENT),
        ("subscription:push", "roles/pubsub.subscriber", PUBSUB_AGENT),
        ("subscription:pull", "roles/pubsub.subscriber", PUBSUB_AGENT),
        ("subscription:pull", "roles/pubsub.subscriber", "var.consumer_pull_members"),
        ("service_account:pubsub_push", "roles/iam.serviceAccountTokenCreator", PUBSUB_AGENT),
    }
)

# IAM resource type -> (scope kind, attribute naming what is granted on, its type).
_SCOPES: dict[str, tuple[str, str | None, str | None]] = {
    "google_project_iam_member": ("project", None, None),
    "google_project_iam_binding": ("project", None, None),
    "google_folder_iam_member": ("folder", None, None),
    "google_folder_iam_binding": ("folder", None, None),
    "google_organization_iam_member": ("organization", None, None),
    "google_organization_iam_binding": ("organization", None, None),
    "google_cloud_tasks_queue_iam_member": ("queue", "name", "google_cloud_tasks_queue"),
    "google_service_account_iam_member": ("service_account", "service_account_id",
                                          SERVICE_ACCOUNT),
    "google_service_account_iam_binding": ("service_account", "service_account_id",
                                           SERVICE_ACCOUNT),
    "google_cloud_run_v2_service_iam_member": ("service", "name", FUNCTION),
    "google_cloud_run_v2_service_iam_binding": ("service", "name", FUNCTION),
    "google_cloud_run_service_iam_member": ("service", "service", FUNCTION),
    "google_cloudfunctions2_function_iam_member": ("service", "cloud_function", FUNCTION),
    "google_secret_manager_secret_iam_member": ("secret", "secret_id",
                                                "google_secret_manager_secret"),
    "google_secret_manager_secret_iam_binding": ("secret", "secret_id",
                                                 "google_secret_manager_secret"),
    "google_storage_bucket_iam_member": ("bucket", "bucket", "google_storage_bucket"),
    "google_artifact_registry_repository_iam_member": (
        "repository", "repository", "google_artifact_registry_repository"),
    "google_pubsub_topic_iam_member": ("topic", "topic", "google_pubsub_topic"),
    "google_pubsub_topic_iam_binding": ("topic", "topic", "google_pubsub_topic"),
    "google_pubsub_subscription_iam_member": ("subscription", "subscription",
                                              "google_pubsub_subscription"),
    "google_pubsub_subscription_iam_binding": ("subscription", "subscription",
                                               "google_pubsub_subscription"),
}


class Grant:
    def __init__(self, address: str, scope: str, role: str, member: str) -> None:
        self.address, self.scope, self.role, self.member = address, scope, role, member

    def key(self) -> tuple[str, str, str]:
        return (self.scope, self.role, self.member)


def grants(config: hcl.Config) -> list[Grant]:
    found = []
    for block in config.resources():
        if "_iam_" not in block.type:
            continue
        kind, attr, target_type = _SCOPES.get(block.type, (block.type, None, None))
        scope = kind
        if attr is not None and target_type is not None:
            target = hcl.single_reference(block.body.get(attr), target_type)
            scope = f"{kind}:{target or block.body.get(attr)}"
        condition = block.first("condition", "expression")
        if condition is not None:
            scope = f"{scope} if {condition}"
        role = str(block.body.get("role", "<policy>"))
        members = block.body.get("members") or [block.body.get("member")]
        if block.type.endswith("_iam_policy"):
            members = ["<whole policy>"]
        for member in members:
            found.append(Grant(block.address, scope, role,
                               _member(member, block, config.locals)))
    return found


def _member(value: Any, block: hcl.Block, locals_: dict[str, Any]) -> str:
    account = hcl.single_reference(value, SERVICE_ACCOUNT)
    if account:
        return f"sa:{account}"
    named = re.fullmatch(r"\$\{local\.([\w-]+)\}", str(value))
    if named and isinstance(locals_.get(named.group(1)), str):
        value = locals_[named.group(1)]
    text = str(value)
    if text.startswith("serviceAccount:service-") and text.endswith(_PUBSUB_AGENT_DOMAIN):
        return PUBSUB_AGENT
    if value == "${each.value}":  # for_each over a variable: the variable names the members
        variables = [v for v in hcl.strings(block.body.get("for_each")) if "var." in v]
        if variables:
            return str(hcl.unquote(variables[0])).removeprefix("toset(").removesuffix(")")
    return str(hcl.unquote(value))


def check(config: hcl.Config) -> list[str]:
    found = grants(config)
    return [*check_matrix(found), *check_builds(config, found), *check_wait_triggers(config),
            *check_invokers(config, found), *_default_accounts(config)]


def check_matrix(found: list[Grant]) -> list[str]:
    problems: list[str] = []
    for grant in found:
        where = f"[iam] {grant.address}"
        if grant.member == "<whole policy>":
            problems.append(f"{where}: authoritative IAM policies replace grants made "
                            "elsewhere; use *_iam_member")
        if grant.role in BASIC_ROLES:
            problems.append(f"{where}: basic role {grant.role} is never granted")
        if grant.scope in BROAD_SCOPES and grant.role in IMPERSONATION_ROLES:
            problems.append(f"{where}: {grant.role} at {grant.scope} level lets "
                            f"{grant.member} act as every service account; grant it on "
                            "one service account")
        if grant.member in PUBLIC_MEMBERS and grant.key() != (
                "service:webhook", "roles/run.invoker", "allUsers"):
            problems.append(f"{where}: {grant.member} may only invoke the webhook, "
                            f"not hold {grant.role} on {grant.scope}")
    actual = {g.key() for g in found if not g.scope.startswith("secret:")}
    for scope, role, member in sorted(EXPECTED_GRANTS - actual):
        problems.append(f"[iam] missing grant: {role} on {scope} for {member}")
    for grant in found:
        if not grant.scope.startswith("secret:") and grant.key() not in EXPECTED_GRANTS:
            problems.append(f"[iam] {grant.address}: unexpected grant {grant.role} on "
                            f"{grant.scope} for {grant.member} (not in the matrix)")
    return problems


def check_builds(config: hcl.Config, found: list[Grant]) -> list[str]:
    """The build account can read gcf-v2-sources-*, and functions wait for IAM."""
    problems: list[str] = []
    functions = config.resources(FUNCTION)
    builders = {hcl.single_reference(f.first("build_config", "service_account"),
                                     SERVICE_ACCOUNT) for f in functions}
    readers = [g for g in found if g.role in OBJECT_READ_ROLES
               and g.scope in ("project", GCF_SOURCES_SCOPE)]
    for builder in sorted(b for b in builders if b):
        grant = next((g for g in readers if g.member == f"sa:{builder}"), None)
        if grant is None:
            problems.append(
                f"[builds] the build account sa:{builder} cannot read Google's "
                "gcf-v2-sources-<number>-<region> bucket: grant roles/storage.objectViewer "
                f"at project level with the condition {GCF_SOURCES_CONDITION}")
            continue
        address = grant.address.split("[")[0]
        for function in functions:
            if not _waits_for(config, function, address):
                problems.append(f"[builds] {function.address} does not wait for IAM "
                                f"propagation of {address} (a time_sleep that depends on it)")
    return problems


def check_wait_triggers(config: hcl.Config) -> list[str]:
    """A time_sleep is created once: a grant added or changed by a later apply
    would not wait for it, unless its `triggers` name that grant, so that the
    sleep is replaced (and waited for again) whenever the grant changes."""
    problems: list[str] = []
    for sleep in config.resources("time_sleep", expand=False):
        covered = [str(hcl.unquote(d)).split("[")[0] for d in sleep.body.get("depends_on", [])]
        triggered = {f"{r.type}.{r.name}" for r in hcl.references(sleep.body.get("triggers"))}
        for address in covered:
            if "_iam_" in address and address not in triggered:
                problems.append(f"[builds] {sleep.address}: its triggers do not name "
                                f"{address}, so a grant added or changed after the first "
                                "apply would not wait for IAM propagation")
    return problems


def _waits_for(config: hcl.Config, function: hcl.Block, grant_address: str) -> bool:
    for dependency in function.body.get("depends_on", []):
        name = str(hcl.unquote(dependency))
        if not name.startswith("time_sleep."):
            continue
        sleep = config.resource("time_sleep", name.split(".")[1].split("[")[0])
        if sleep is None:
            continue
        needs = [str(hcl.unquote(d)).split("[")[0] for d in sleep.body.get("depends_on", [])]
        if grant_address in needs and sleep.body.get("create_duration"):
            return True
    return False


def check_invokers(config: hcl.Config, found: list[Grant]) -> list[str]:
    problems: list[str] = []
    invoked: dict[str, set[str]] = {}
    for grant in found:
        if grant.role != "roles/run.invoker" or not grant.member.startswith("sa:"):
            continue
        service = grant.scope.removeprefix("service:")
        invoked.setdefault(grant.member, set()).add(service)
        if service in INVOKERS and grant.member != INVOKERS[service]:
            problems.append(f"[invokers] {grant.address}: {grant.member} may invoke the "
                            f"{service}; only {INVOKERS[service]} may (one invoker per target)")
    for member, services in sorted(invoked.items()):
        if len(services) > 1:
            problems.append(f"[invokers] {member} may invoke {', '.join(sorted(services))}: "
                            "one invoker account per target")
    enqueuers = {g.member for g in found if g.role == "roles/cloudtasks.enqueuer"}
    acting = {g.member for g in found if g.role == "roles/iam.serviceAccountUser"
              and g.scope == "service_account:" + INVOKERS["worker"].removeprefix("sa:")}
    for member in sorted(enqueuers - acting):
        problems.append(f"[invokers] {member} enqueues sync tasks but may not act as "
                        f"{INVOKERS['worker']}: its tasks would be refused")
    for job in config.resources("google_cloud_scheduler_job"):
        oidc = job.first("http_target", "oidc_token", "service_account_email")
        if f"sa:{hcl.single_reference(oidc, SERVICE_ACCOUNT)}" != INVOKERS["renewer"]:
            problems.append(f"[invokers] {job.address}: OIDC token must be minted for "
                            f"{INVOKERS['renewer']}")
    return problems


def _default_accounts(config: hcl.Config) -> list[str]:
    from infra.tfcheck.consistency import FUNCTION_ACCOUNTS

    problems = []
    for block in config.blocks:
        for text in hcl.strings(block.body):
            if any(marker in text for marker in DEFAULT_ACCOUNTS):
                problems.append(f"[iam] {block.address}: uses a default service account "
                                f"({text!r})")
    for function in config.resources(FUNCTION):
        entry = str(function.first("build_config", "entry_point"))
        runtime = hcl.single_reference(
            function.first("service_config", "service_account_email"), SERVICE_ACCOUNT)
        builder = hcl.single_reference(function.first("build_config", "service_account"),
                                       SERVICE_ACCOUNT)
        if runtime != FUNCTION_ACCOUNTS.get(entry):
            problems.append(f"[iam] {function.address}: must run as "
                            f"google_service_account.this[{FUNCTION_ACCOUNTS.get(entry)!r}] "
                            "(unset means the default compute account)")
        if builder is None:
            problems.append(f"[iam] {function.address}: build_config.service_account must "
                            "name a dedicated account (unset means the default compute account)")
    return problems
