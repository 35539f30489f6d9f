"""Check that terraform/ deploys what the code needs, and no more.

- env: each function in `local.functions` gets exactly the variables
  `functions/config.py` says it reads (secrets through Secret Manager,
  `local_only` ones never), plus LOG_EXECUTION_ID; entry points match main.py;
  URLs and identities come from configuration, not typed by hand. A variable
  Terraform deploys before config.py declares it (`AHEAD_OF_CONFIG`), or a
  function config.py does not know yet, is reported as such, never ignored.
- secrets: each secret a function reads exists, has a version, and is readable
  by exactly the functions that read it.
- cli: the `cli_environment` output carries every configured (WIRED) value
  the functions get, and no secret.
- the rest lives beside this module: IAM (`iam_check`), Pub/Sub publishers,
  subscriptions and dead-lettering (`pubsub_check`), API ordering
  (`apis`), Firestore indexes, exemptions and TTL (`firestore_check`), log
  metrics against the lines the code writes (`monitoring_check`), threads
  against concurrency (`sizing_check`), the renewer's tick, queue and fan-out
  (`renewer_check`), the committed tfvars (`tfvars_check`),
  README's deploy guide against terraform/ and cloudbuild.yaml (`deploy_guide`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from infra.tfcheck import (
    apis,
    budget_check,
    deploy_guide,
    firestore_check,
    hcl,
    iam_check,
    lockfile,
    monitoring_check,
    pubsub_check,
    renewer_check,
    sizing_check,
    tfvars_check,
)
from infra.tfcheck.iam_check import FUNCTION, SERVICE_ACCOUNT

SECRET = "google_secret_manager_secret"

# Entry point (config's function name) -> the service account it runs as.
FUNCTION_ACCOUNTS = {"webhook": "webhook", "sync_worker": "worker",
                     "renew_channels": "renewer", "api": "api"}
INGRESS = {"webhook": "ALLOW_ALL", "sync_worker": "ALLOW_INTERNAL_ONLY",
           "renew_channels": "ALLOW_INTERNAL_ONLY", "api": "${var.api_ingress}"}

# Read by the runtime rather than functions/config.py, set on every function:
# the framework's execution ids in logs, and gunicorn's threads (sizing_check).
RUNTIME_VARIABLES = {"LOG_EXECUTION_ID", sizing_check.THREADS}

# Variables whose value must come from configuration: the expression it must be.
WIRED = {
    "CALSYNC_WORKER_URL": "local.function_urls.worker",
    "CALSYNC_RENEWER_URL": "local.function_urls.renewer",
    "CALSYNC_WEBHOOK_URL": "local.webhook_url",
    "CALSYNC_TASKS_INVOKER_SA": 'google_service_account.this["worker_invoker"].email',
    "CALSYNC_RENEWER_INVOKER_SA": 'google_service_account.this["renewer_invoker"].email',
    "CALSYNC_DELEGATION_SA": 'google_service_account.this["delegation"].email',
    "CALSYNC_TASKS_QUEUE": "google_cloud_tasks_queue.sync.name",
    "CALSYNC_RENEWER_QUEUE": "google_cloud_tasks_queue.renewer.name",
    "CALSYNC_PUBSUB_TOPIC": "google_pubsub_topic.changes.name",
}

# Deployed by Terraform before functions/config.py declares them (the code is
# being written on other branches): name -> why. Each one is still reported
# until config.py lists it; then the ordinary rules apply.
AHEAD_OF_CONFIG = {
    "CALSYNC_DISPATCH_DEADLINE_SECONDS": "each task's dispatch deadline, the same value as "
                                         "the worker's timeout (functions/tasks.py still has "
                                         "the constant DISPATCH_DEADLINE_SECONDS)",
    "CALSYNC_RENEWER_INVOKER_SA": "the account the renewer's own continuation tasks are "
                                  "minted for (one invoker account per target)",
    "CALSYNC_FEED_RETENTION_DAYS": "feed entries' expire_at (DESIGN.md, Retention)",
}


def is_pending(problem: str) -> bool:
    """A problem that only says terraform/ is ahead of code being written elsewhere."""
    return (" which functions/ does not log yet " in problem
            or " is deployed ahead of functions/config.py " in problem)


def check(config: hcl.Config, root: Path) -> list[str]:
    """Every consistency problem, one message each; `root` holds main.py and functions/."""
    from functions.config import ALL_FUNCTIONS, VARIABLES

    return [
        *check_env(config, VARIABLES, root, ALL_FUNCTIONS),
        *check_secrets(config, VARIABLES),
        *check_cli_environment(config, VARIABLES),
        *firestore_check.check(config),
        *iam_check.check(config),
        *pubsub_check.check(config, root),
        *apis.check(config),
        *monitoring_check.check(config, root),
        *sizing_check.check(config),
        *renewer_check.check(config),
        *budget_check.check(config),
        *tfvars_check.check(config),
        *lockfile.check(config.directory),
        *deploy_guide.check(config, (root / "README.md").read_text(),
                            (root / "cloudbuild.yaml").read_text()),
    ]


# --- env ---------------------------------------------------------------------


def functions_by_entry_point(config: hcl.Config) -> dict[str, hcl.Block]:
    return {str(f.first("build_config", "entry_point")): f for f in config.resources(FUNCTION)}


def check_env(config: hcl.Config, variables: Iterable[Any], root: Path,
              known_functions: Iterable[str] | None = None) -> list[str]:
    variables = list(variables)
    known = set(known_functions) if known_functions is not None else None
    declared = {v.name for v in variables}
    problems: list[str] = []
    deployed = functions_by_entry_point(config)
    if not deployed:
        return ["[env] no google_cloudfunctions2_function found (expected one for_each "
                "over local.functions)"]
    entry_points = _entry_points(root / "main.py")
    for name in sorted(entry_points - set(deployed)):
        problems.append(f"[env] main.py entry point {name!r} is not deployed by any function")
    for name in sorted(set(deployed) - entry_points):
        problems.append(f"[env] {deployed[name].address} uses entry point {name!r}, "
                        "which main.py does not define")
    for entry, function in sorted(deployed.items()):
        where = function.address
        plain = function.first("service_config", "environment_variables")
        if not isinstance(plain, dict):
            problems.append(f"[env] {where}: environment_variables must be a literal map "
                            f"(local.functions[...].env), not {plain!r}")
            plain = {}
        secret = {str(s.get("key")) for s in secret_envs(function, config)}
        if known is not None and entry not in known:
            problems.append(
                f"[env] {where}: functions/config.py does not know the function {entry!r} "
                "(not in ALL_FUNCTIONS), so its variables cannot be checked; deployed: "
                + ", ".join(sorted(set(plain) | secret)))
            continue
        reads = [v for v in variables if entry in v.used_by and not v.local_only]
        want_plain = {v.name for v in reads if not v.secret} | RUNTIME_VARIABLES
        want_secret = {v.name for v in reads if v.secret}
        local_only = {v.name for v in variables if v.local_only}
        for name in sorted(want_plain - set(plain)):
            problems.append(f"[env] {where}: {name} is read by {entry} but not set")
        for name in sorted(want_secret - secret):
            problems.append(f"[env] {where}: secret {name} is read by {entry} but not set "
                            "from Secret Manager")
        for name in sorted((set(plain) | secret) - want_plain - want_secret):
            if name in AHEAD_OF_CONFIG and name not in declared:
                why = (f"is deployed ahead of functions/config.py ({AHEAD_OF_CONFIG[name]}); "
                       f"add it to VARIABLES with {entry} in used_by")
            elif name in local_only:
                why = "is emulator-only (local_only) and must not be set in production"
            else:
                why = f"is not read by {entry}"
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
        expected_ingress = INGRESS.get(entry, "ALLOW_INTERNAL_ONLY")
        if ingress != expected_ingress:
            problems.append(f"[env] {where}: ingress_settings is {ingress!r}, "
                            f"expected {expected_ingress!r}")
    webhook_url = hcl.unquote(config.locals.get("webhook_url", ""))
    if "local.function_urls.webhook" not in str(webhook_url):
        problems.append("[env] local.webhook_url must default to local.function_urls.webhook")
    return problems


_DYNAMIC_ITEM = "secret_environment_variables.value"


def secret_envs(function: hcl.Block, config: hcl.Config) -> list[dict[str, Any]]:
    """The function's secret variables: static blocks, and the dynamic block over
    `each.value.secrets` resolved through `local.secrets` (key = its `env`)."""
    service = (function.body.get("service_config") or [{}])[0]
    found = list(service.get("secret_environment_variables", []))
    for dynamic in service.get("dynamic", []):
        spec = dynamic.get("secret_environment_variables")
        if spec is None:
            continue
        items = spec.get("for_each")
        content = (spec.get("content") or [{}])[0]
        if not isinstance(items, list):
            found.append({"key": f"<unresolved {items!r}>", "secret": None})
            continue
        for item in items:
            resolved = {name: _resolve_item(value, str(item), config)
                        for name, value in content.items()}
            found.append(resolved)
    return found


def _resolve_item(value: Any, item: str, config: hcl.Config) -> Any:
    if not isinstance(value, str):
        return value
    text = value.replace(_DYNAMIC_ITEM, f'"{item}"')
    match = re.fullmatch(r'\$\{local\.([\w]+)\["([^"]+)"\]\.([\w]+)\}', text)
    if match:
        table = config.locals.get(match.group(1), {})
        entry = table.get(match.group(2)) if isinstance(table, dict) else None
        return entry.get(match.group(3)) if isinstance(entry, dict) else None
    return text


def _entry_points(main_py: Path) -> set[str]:
    tree = ast.parse(main_py.read_text())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.decorator_list}


# --- the operator CLI's environment -------------------------------------------

CLI_OUTPUT = "cli_environment"
# Besides WIRED: where the deployment is.
CLI_PLACE = {"GOOGLE_CLOUD_PROJECT": "var.project", "CALSYNC_REGION": "var.region"}


def check_cli_environment(config: hcl.Config, variables: Iterable[Any]) -> list[str]:
    """`terraform output cli_environment` points the CLI at this deployment: every
    variable whose value comes from the configuration (WIRED), as the functions
    get it, and no secret (those are read from Secret Manager per command)."""
    output = config.outputs.get(CLI_OUTPUT, {}).get("value")
    if not isinstance(output, dict):
        return [f"[cli] output {CLI_OUTPUT} must be a literal map of variables"]
    problems: list[str] = []
    for name, expected in sorted({**WIRED, **CLI_PLACE}.items()):
        if name not in output:
            problems.append(f"[cli] output {CLI_OUTPUT} lacks {name} (`{expected}`): the CLI "
                            "would run against another configuration than the functions")
        elif hcl.unquote(output[name]) != expected:
            problems.append(f"[cli] output {CLI_OUTPUT}: {name} must be `{expected}`, "
                            f"not {output[name]!r}")
    for variable in variables:
        if variable.name in output and (variable.secret or variable.local_only):
            kind = "a secret" if variable.secret else "emulator-only (local_only)"
            problems.append(f"[cli] output {CLI_OUTPUT} shows {variable.name}, which is {kind}")
    return problems


# --- secrets -----------------------------------------------------------------


def check_secrets(config: hcl.Config, variables: Iterable[Any]) -> list[str]:
    problems: list[str] = []
    secret_vars = {v.name for v in variables if v.secret}
    readers: dict[str, set[str]] = {}  # secret -> members that must read it
    backing: dict[str, str] = {}  # secret variable -> secret
    for _entry, function in sorted(functions_by_entry_point(config).items()):
        account = hcl.single_reference(
            function.first("service_config", "service_account_email"), SERVICE_ACCOUNT)
        for env in secret_envs(function, config):
            key, where = str(env.get("key")), function.address
            secret = hcl.single_reference(env.get("secret"), SECRET)
            if key not in secret_vars:
                problems.append(f"[secrets] {where}: {key} is not a secret in functions/config.py")
            if secret is None or not _declared_secret(config, env.get("secret")):
                problems.append(f"[secrets] {where}: {key} refers to a secret that is not "
                                f"declared ({env.get('secret')!r})")
                continue
            if backing.setdefault(key, secret) != secret:
                problems.append(f"[secrets] {key} comes from {backing[key]} in one function "
                                f"and {secret} in another")
            readers.setdefault(secret, set()).add(f"sa:{account}")
            problems += _version_problems(config, where, key, env.get("version"))
    versions = {hcl.single_reference(v.body.get("secret"), SECRET)
                for v in config.resources("google_secret_manager_secret_version")}
    granted: dict[str, set[str]] = {}
    for grant in iam_check.grants(config):
        if grant.role != "roles/secretmanager.secretAccessor":
            continue
        if not grant.scope.startswith("secret:"):
            problems.append(f"[secrets] {grant.address}: secretAccessor granted on "
                            f"{grant.scope}; grant it per secret")
            continue
        granted.setdefault(grant.scope.removeprefix("secret:"), set()).add(grant.member)
    declared = {b.key or b.name for b in config.resources(SECRET)}
    for secret in sorted(declared | set(readers)):
        if secret in readers and secret not in versions:
            problems.append(f"[secrets] {SECRET}[{secret!r}] has no version: functions "
                            "reading it would fail to deploy")
        want, have = readers.get(secret, set()), granted.get(secret, set())
        for member in sorted(want - have):
            problems.append(f"[secrets] {SECRET}[{secret!r}]: {member} reads it but is not "
                            "granted secretAccessor")
        for member in sorted(have - want):
            problems.append(f"[secrets] {SECRET}[{secret!r}]: {member} is granted "
                            "secretAccessor but runs no function that reads it")
    return problems


def _declared_secret(config: hcl.Config, expression: Any) -> bool:
    refs = [r for r in hcl.references(expression) if r.type == SECRET and not r.data]
    return len(refs) == 1 and any(
        b.name == refs[0].name and (refs[0].key is None or b.key == refs[0].key)
        for b in config.resources(SECRET))


def _version_problems(config: hcl.Config, where: str, key: str, version: Any) -> list[str]:
    """A function reads a pinned version that Terraform created (or the tfvars pin),
    never `latest`: it then cannot deploy before a version exists, and moving a
    pin rolls it."""
    text = str(version)
    if text == "latest" or version is None:
        return [f"[secrets] {where}: {key} reads version {version!r}; pin it to "
                "local.secret_version (the created version, or var.secret_versions)"]
    seen: set[str] = set()
    pending = [text]
    while pending:
        current = pending.pop()
        if "google_secret_manager_secret_version." in current:
            return []
        for name in re.findall(r"(?<![\w.])local\.([A-Za-z_][\w-]*)", current):
            if name not in seen and name in config.locals:
                seen.add(name)
                pending.append(str(config.locals[name]))
    return [f"[secrets] {where}: {key} reads version {version!r}, which does not come "
            "from a google_secret_manager_secret_version: the function could deploy "
            "before the secret has a version"]
