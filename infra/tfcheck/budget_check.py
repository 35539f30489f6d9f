"""The Calendar call budgets in terraform/ (issue 19 item 2; functions/sync/budget.py).

The project's budget is held by the sync queue's rate, so terraform's rate and the
functions' settings must be one formula:
- `google_cloud_tasks_queue.sync` dispatches at `local.sync_dispatches_per_second`;
- that local, evaluated over the variables, equals `functions.config.
  sync_dispatches_per_second` (the settings' formula) for the defaults and for
  other values (a copy that drifts, e.g. forgets the renewals' share or the calls
  per task, fails here);
- the functions are deployed with the variables the formula reads: the worker
  with the calls per task and the owners' budget, the renewer with the project's
  budget, the renewals per minute and the owners' budget.
"""

from __future__ import annotations

import math
import re
from typing import Any

from infra.tfcheck import hcl

QUEUE = "google_cloud_tasks_queue"
LOCAL = "sync_dispatches_per_second"
# Formula inputs: terraform variable -> calsync setting (functions/config.py).
INPUTS = {
    "project_calls_per_minute": "project_calls_per_minute",
    "renewals_per_minute": "renewals_per_minute",
    "calls_per_sync_task": "calls_per_task",
}
# Other values the two formulas must agree on besides the defaults.
SAMPLES = [
    {"project_calls_per_minute": 6000, "renewals_per_minute": 500, "calls_per_sync_task": 2},
    {"project_calls_per_minute": 10000, "renewals_per_minute": 100, "calls_per_sync_task": 1},
    {"project_calls_per_minute": 9000, "renewals_per_minute": 3000, "calls_per_sync_task": 3},
]
ENV = {
    "worker": {
        "CALSYNC_CALLS_PER_SYNC_TASK": "tostring(var.calls_per_sync_task)",
        "CALSYNC_USER_CALLS_PER_MINUTE": "tostring(var.user_calls_per_minute)",
        "CALSYNC_USER_BUDGET_SHARDS": "tostring(var.user_budget_shards)",
    },
    "renewer": {
        "CALSYNC_PROJECT_CALLS_PER_MINUTE": "tostring(var.project_calls_per_minute)",
        "CALSYNC_RENEWALS_PER_MINUTE": "tostring(var.renewals_per_minute)",
        "CALSYNC_CALLS_PER_SYNC_TASK": "tostring(var.calls_per_sync_task)",
        "CALSYNC_USER_CALLS_PER_MINUTE": "tostring(var.user_calls_per_minute)",
        "CALSYNC_USER_BUDGET_SHARDS": "tostring(var.user_budget_shards)",
    },
}
_ARITHMETIC = re.compile(r"[\d\s+\-*/().,]*")


def _expr(value: object) -> str:
    text = str(hcl.unquote(value))
    match = re.fullmatch(r"\$\{(.*)\}", text, re.S)
    return " ".join((match.group(1) if match else text).split())


def evaluate(expression: str, values: dict[str, int]) -> int | None:
    """The local's value for these variables: `min`, `max`, `floor` and arithmetic over
    `var.*` only (None when it reads anything else)."""
    text = expression
    for name in sorted(values, key=len, reverse=True):
        text = text.replace(f"var.{name}", str(values[name]))
    bare = re.sub(r"\b(min|max|floor)\b", "", text)
    if not _ARITHMETIC.fullmatch(bare):
        return None
    result = eval(text, {"__builtins__": {}},  # noqa: S307 - arithmetic checked above
                  {"min": min, "max": max, "floor": math.floor})
    return int(result)


def check(config: hcl.Config) -> list[str]:
    return [*check_queue(config), *check_formula(config), *check_deployed(config)]


def check_queue(config: hcl.Config) -> list[str]:
    queue = config.resource(QUEUE, "sync")
    if queue is None:
        return [f"[budget] no {QUEUE}.sync"]
    rate = _expr(queue.first("rate_limits", "max_dispatches_per_second"))
    if rate != f"local.{LOCAL}":
        return [f"[budget] {queue.address}: max_dispatches_per_second must be "
                f"local.{LOCAL} (the project's call budget in tasks), not {rate!r}"]
    return []


def check_formula(config: hcl.Config) -> list[str]:
    from functions.config import Settings, sync_dispatches_per_second

    if LOCAL not in config.locals:
        return [f"[budget] no local.{LOCAL}: the sync queue's rate must follow the call "
                "budget settings"]
    expression = _expr(config.locals[LOCAL])
    defaults: dict[str, Any] = {}
    problems = []
    for variable, setting in INPUTS.items():
        default = config.variables.get(variable, {}).get("default")
        if default is None:
            problems.append(f"[budget] variable {variable} needs a default (the formula "
                            "reads it)")
            continue
        defaults[variable] = int(default)
        code = getattr(Settings, setting, None)
        if variable != "renewals_per_minute" and code is not None and int(default) != code:
            problems.append(f"[budget] variable {variable} defaults to {default}, the "
                            f"setting to {code}: the deployed budget would not be the "
                            "documented one")
    if problems:
        return problems
    for values in [defaults, *SAMPLES]:
        want = sync_dispatches_per_second(values["project_calls_per_minute"],
                                          values["renewals_per_minute"],
                                          values["calls_per_sync_task"])
        got = evaluate(expression, values)
        if got != want:
            problems.append(f"[budget] local.{LOCAL} = {expression!r} gives {got} for "
                            f"{values}; functions.config.sync_dispatches_per_second gives "
                            f"{want}")
            break
    return problems


def check_deployed(config: hcl.Config) -> list[str]:
    functions = config.locals.get("functions")
    problems = []
    for function, wanted in ENV.items():
        env = ((functions or {}).get(function, {}).get("env")
               if isinstance(functions, dict) else None)
        if not isinstance(env, dict):
            problems.append(f"[budget] local.functions.{function}.env is not a literal map")
            continue
        for name, expected in wanted.items():
            if _expr(env.get(name)) != expected:
                problems.append(f"[budget] local.functions.{function}.env: {name} must be "
                                f"`{expected}`, not {env.get(name)!r}")
    return problems
