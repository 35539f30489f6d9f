"""Check that terraform/ deploys what the code needs, and no more.

- env: each function gets exactly the variables `functions/config.py` says it
  reads (secrets through Secret Manager, `local_only` ones never), plus
  LOG_EXECUTION_ID; entry points match main.py; URLs and identities come from
  configuration, not typed by hand.
- secrets: each secret a function reads exists, has a version, and is readable
  by exactly the functions that read it.
- indexes: each query in `queries.QUERIES` has its composite index.
- iam: the least-privilege matrix below, and the rules behind it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from infra.tfcheck import hcl
from infra.tfcheck.queries import normalised

FUNCTION = "google_cloudfunctions2_function"
SERVICE_ACCOUNT = "google_service_account"
SECRET = "google_secret_manager_secret"

# Entry point (config's function name) -> the service account it runs as.
FUNCTION_ACCOUNTS = {"webhook": "webhook", "sync_worker": "worker",
                     "renew_channels": "renewer"}
INGRESS = {"webhook": "ALLOW_ALL", "sync_worker": "ALLOW_INTERNAL_ONLY",
           "renew_channels": "ALLOW_INTERNAL_ONLY"}

# Variables whose value must come from configuration: the expression it must be.
WIRED = {
    "CALSYNC_WORKER_URL": "local.function_urls.worker",
    "CALSYNC_RENEWER_URL": "local.function_urls.renewer",
    "CALSYNC_WEBHOOK_URL": "local.webhook_url",
    "CALSYNC_TASKS_INVOKER_SA": "google_service_account.tasks_invoker.email",
    "CALSYNC_DELEGATION_SA": "google_service_account.delegation.email",
    "CALSYNC_TASKS_QUEUE": "google_cloud_tasks_queue.sync.name",
}

PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
IMPERSONATION_ROLES = {"roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator",
                       "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountKeyAdmin"}
BROAD_SCOPES = {"project", "folder", "organization"}
DEFAULT_ACCOUNTS = ("-compute@developer.gserviceaccount.com", "@appspot.gserviceaccount.com",
                    "@cloudbuild.gserviceaccount.com")

# Every grant outside Secret Manager: (scope, role, member). Secret grants are
# derived from the functions' secret variables (see `check_secrets`).
# Scopes name the Terraform resource granted on; "sa:x" is google_service_account.x.
_RUNTIME = ("sa:webhook", "sa:worker", "sa:renewer")
EXPECTED_GRANTS: frozenset[tuple[str, str, str]] = frozenset(
    {("project", "roles/datastore.user", sa) for sa in _RUNTIME}
    | {("queue:sync", "roles/cloudtasks.enqueuer", sa) for sa in _RUNTIME}
    | {("service_account:tasks_invoker", "roles/iam.serviceAccountUser", sa) for sa in _RUNTIME}
    | {("service_account:delegation", "roles/iam.serviceAccountTokenCreator", sa)
       for sa in ("sa:worker", "sa:renewer")}
    | {
        ("service:worker", "roles/run.invoker", "sa:tasks_invoker"),
        ("service:renewer", "roles/run.invoker", "sa:tasks_invoker"),
        ("service:renewer", "roles/run.invoker", "sa:scheduler"),
        ("service:webhook", "roles/run.invoker", "allUsers"),
        ("project", "roles/logging.logWriter", "sa:builder"),
        ("repository:functions", "roles/artifactregistry.writer", "sa:builder"),
        ("bucket:source", "roles/storage.objectViewer", "sa:builder"),
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
    "google_secret_manager_secret_iam_member": ("secret", "secret_id", SECRET),
    "google_secret_manager_secret_iam_binding": ("secret", "secret_id", SECRET),
    "google_storage_bucket_iam_member": ("bucket", "bucket", "google_storage_bucket"),
    "google_artifact_registry_repository_iam_member": (
        "repository", "repository", "google_artifact_registry_repository"),
}


def check(config: hcl.Config, root: Path) -> list[str]:
    """Every consistency problem, one message each; `root` holds main.py and functions/."""
    from functions.config import VARIABLES

    return [
        *check_env(config, VARIABLES, root),
        *check_secrets(config, VARIABLES),
        *check_indexes(config, _store_queries(root)),
        *check_iam(config),
    ]


# --- env ---------------------------------------------------------------------


def functions_by_entry_point(config: hcl.Config) -> dict[str, hcl.Block]:
    return {str(f.first("build_config", "entry_point")): f for f in config.resources(FUNCTION)}


def check_env(config: hcl.Config, variables: Iterable[Any], root: Path) -> list[str]:
    variables = list(variables)
    problems: list[str] = []
    deployed = functions_by_entry_point(config)
    entry_points = _entry_points(root / "main.py")
    for name in sorted(entry_points - set(deployed)):
        problems.append(f"[env] main.py entry point {name!r} is not deployed by any function")
    for name in sorted(set(deployed) - entry_points):
        problems.append(f"[env] {deployed[name].address} uses entry point {name!r}, "
                        "which main.py does not define")
    for entry, function in sorted(deployed.items()):
        where = function.address
        plain = function.first("service_config", "environment_variables") or {}
        secret = {str(s.get("key")) for s in _secret_envs(function)}
        reads = [v for v in variables if entry in v.used_by and not v.local_only]
        want_plain = {v.name for v in reads if not v.secret} | {"LOG_EXECUTION_ID"}
        want_secret = {v.name for v in reads if v.secret}
        local_only = {v.name for v in variables if v.local_only}
        for name in sorted(want_plain - set(plain)):
            problems.append(f"[env] {where}: {name} is read by {entry} but not set")
        for name in sorted(want_secret - secret):
            problems.append(f"[env] {where}: secret {name} is read by {entry} but not set "
                            "from Secret Manager")
        for name in sorted((set(plain) | secret) - want_plain - want_secret):
            why = ("is emulator-only (local_only) and must not be set in production"
                   if name in local_only else f"is not read by {entry}")
            problems.append(f"[env] {where}: {name} {why}")
        for name in sorted(set(plain) & want_secret):
            problems.append(f"[env] {where}: secret {name} is set as a plain environment "
                            "variable; use secret_environment_variables")
        if plain.get("LOG_EXECUTION_ID") not in ("true", True):
            problems.append(f'[env] {where}: LOG_EXECUTION_ID must be "true"')
        for name, expected in WIRED.items():
            if name in plain and hcl.unquote(plain[name]) != expected:
                problems.append(f"[env] {where}: {name} must come from configuration "
                                f"(`{expected}`), not {plain[name]!r}")
        ingress = function.first("service_config", "ingress_settings")
        if ingress != INGRESS.get(entry, "ALLOW_INTERNAL_ONLY"):
            problems.append(f"[env] {where}: ingress_settings is {ingress!r}, "
                            f"expected {INGRESS.get(entry, 'ALLOW_INTERNAL_ONLY')!r}")
    webhook_url = hcl.unquote(config.locals.get("webhook_url", ""))
    if "local.function_urls.webhook" not in str(webhook_url):
        problems.append("[env] local.webhook_url must default to local.function_urls.webhook")
    return problems


def _secret_envs(function: hcl.Block) -> list[dict[str, Any]]:
    service = function.body.get("service_config") or [{}]
    return list(service[0].get("secret_environment_variables", []))


def _entry_points(main_py: Path) -> set[str]:
    tree = ast.parse(main_py.read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.decorator_list}


# --- secrets -----------------------------------------------------------------


def check_secrets(config: hcl.Config, variables: Iterable[Any]) -> list[str]:
    problems: list[str] = []
    secret_vars = {v.name for v in variables if v.secret}
    readers: dict[str, set[str]] = {}  # secret resource -> members that must read it
    backing: dict[str, str] = {}  # secret variable -> secret resource
    for _entry, function in sorted(functions_by_entry_point(config).items()):
        account = hcl.single_reference(
            function.first("service_config", "service_account_email"), SERVICE_ACCOUNT)
        for env in _secret_envs(function):
            key, where = str(env.get("key")), function.address
            secret = hcl.single_reference(env.get("secret"), SECRET)
            if key not in secret_vars:
                problems.append(f"[secrets] {where}: {key} is not a secret in functions/config.py")
            if secret is None or config.resource(SECRET, secret) is None:
                problems.append(f"[secrets] {where}: {key} refers to a secret that is not "
                                f"declared ({env.get('secret')!r})")
                continue
            if backing.setdefault(key, secret) != secret:
                problems.append(f"[secrets] {key} comes from {backing[key]} in one function "
                                f"and {secret} in another")
            readers.setdefault(secret, set()).add(f"sa:{account}")
    versions = {hcl.single_reference(v.body.get("secret"), SECRET)
                for v in config.resources("google_secret_manager_secret_version")}
    granted: dict[str, set[str]] = {}
    for grant in _grants(config):
        if grant.role != "roles/secretmanager.secretAccessor":
            continue
        if not grant.scope.startswith("secret:"):
            problems.append(f"[secrets] {grant.address}: secretAccessor granted on "
                            f"{grant.scope}; grant it per secret")
            continue
        granted.setdefault(grant.scope.removeprefix("secret:"), set()).add(grant.member)
    for secret in sorted({b.name for b in config.resources(SECRET)} | set(readers)):
        if secret in readers and secret not in versions:
            problems.append(f"[secrets] {SECRET}.{secret} has no version: functions reading "
                            "it would fail to deploy")
        want, have = readers.get(secret, set()), granted.get(secret, set())
        for member in sorted(want - have):
            problems.append(f"[secrets] {SECRET}.{secret}: {member} reads it but is not "
                            "granted secretAccessor")
        for member in sorted(have - want):
            problems.append(f"[secrets] {SECRET}.{secret}: {member} is granted secretAccessor "
                            "but runs no function that reads it")
    return problems


# --- indexes -----------------------------------------------------------------


def check_indexes(config: hcl.Config, queries: list[dict[str, Any]]) -> list[str]:
    indexes = set()
    for index in config.resources("google_firestore_index"):
        if index.body.get("query_scope", "COLLECTION") != "COLLECTION":
            continue
        fields = tuple((str(f.get("field_path")), str(f.get("order", "ASCENDING")))
                       for f in index.body.get("fields", []))
        indexes.add((str(index.body.get("collection")), fields))
    return [
        f"[indexes] no composite index for the {collection} query on "
        + ", ".join(f"{path} {order}" for path, order in fields)
        for collection, fields in sorted(normalised(queries) - indexes)
    ]


def _store_queries(root: Path) -> list[dict[str, Any]]:
    """queries.py's QUERIES plus store.py's, when store.py declares them."""
    from infra.tfcheck.queries import QUERIES

    queries = list(QUERIES)
    if (root / "functions" / "store.py").exists():
        import importlib

        store = importlib.import_module("functions.store")
        queries += list(getattr(store, "QUERIES", []))
    return queries


# --- iam ---------------------------------------------------------------------


class Grant:
    def __init__(self, address: str, scope: str, role: str, member: str) -> None:
        self.address, self.scope, self.role, self.member = address, scope, role, member

    def key(self) -> tuple[str, str, str]:
        return (self.scope, self.role, self.member)


def _grants(config: hcl.Config) -> list[Grant]:
    grants = []
    for block in config.resources():
        if "_iam_" not in block.type:
            continue
        kind, attr, target_type = _SCOPES.get(block.type, (block.type, None, None))
        scope = kind
        if attr is not None and target_type is not None:
            target = hcl.single_reference(block.body.get(attr), target_type)
            scope = f"{kind}:{target or block.body.get(attr)}"
        role = str(block.body.get("role", "<policy>"))
        members = block.body.get("members") or [block.body.get("member")]
        if block.type.endswith("_iam_policy"):
            members = ["<whole policy>"]
        for member in members:
            grants.append(Grant(block.address, scope, role, _member(member)))
    return grants


def _member(value: Any) -> str:
    account = hcl.single_reference(value, SERVICE_ACCOUNT)
    return f"sa:{account}" if account else str(hcl.unquote(value))


def check_iam(config: hcl.Config) -> list[str]:
    problems: list[str] = []
    grants = _grants(config)
    for grant in grants:
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
    actual = {g.key() for g in grants if not g.scope.startswith("secret:")}
    for scope, role, member in sorted(EXPECTED_GRANTS - actual):
        problems.append(f"[iam] missing grant: {role} on {scope} for {member}")
    for grant in grants:
        if not grant.scope.startswith("secret:") and grant.key() not in EXPECTED_GRANTS:
            problems.append(f"[iam] {grant.address}: unexpected grant {grant.role} on "
                            f"{grant.scope} for {grant.member} (not in the matrix)")
    problems += _default_accounts(config)
    return problems


def _default_accounts(config: hcl.Config) -> list[str]:
    problems = []
    for block in config.blocks:
        for text in hcl.strings(block.body):
            if any(marker in text for marker in DEFAULT_ACCOUNTS):
                problems.append(f"[iam] {block.address}: uses a default service account "
                                f"({text!r})")
    for entry, function in sorted(functions_by_entry_point(config).items()):
        runtime = hcl.single_reference(
            function.first("service_config", "service_account_email"), SERVICE_ACCOUNT)
        builder = hcl.single_reference(function.first("build_config", "service_account"),
                                       SERVICE_ACCOUNT)
        if runtime != FUNCTION_ACCOUNTS.get(entry):
            problems.append(f"[iam] {function.address}: must run as "
                            f"google_service_account.{FUNCTION_ACCOUNTS.get(entry)} "
                            "(unset means the default compute account)")
        if builder is None:
            problems.append(f"[iam] {function.address}: build_config.service_account must "
                            "name a dedicated account (unset means the default compute account)")
    for job in config.resources("google_cloud_scheduler_job"):
        oidc = job.first("http_target", "oidc_token", "service_account_email")
        if hcl.single_reference(oidc, SERVICE_ACCOUNT) != "scheduler":
            problems.append(f"[iam] {job.address}: OIDC token must be minted for "
                            "google_service_account.scheduler")
    return problems
