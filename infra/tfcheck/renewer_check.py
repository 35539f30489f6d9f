"""The renewer's tick and fan-out in terraform/ (issue 19, item 4; lifecycle/sharding.py).

- the Cloud Scheduler job posts a tick (`{}`) to the renewer: any other body is
  a shard task or the tick's continuation, and would never fan out;
- the renewer's own tasks have a queue of their own (`google_cloud_tasks_queue.
  renewer`), the one CALSYNC_RENEWER_QUEUE names: as many in flight as the
  renewer's instances serve (`max_instances * concurrency` of its sizing, the
  value Cloud Run is given), every shard of a tick dispatched at once
  (`max_dispatches_per_second` from `var.renewal_shards`), retries bounded;
- the renewer is deployed with the shard count, the renewal rate and the slot
  from variables, the shard count validated against the renewer's capacity
  (`renewal_shards <= max_instances * concurrency`), so that the shards of a
  tick never queue behind each other.
"""

from __future__ import annotations

import re

from infra.tfcheck import hcl

QUEUE = "google_cloud_tasks_queue"
SCHEDULER_JOB = "google_cloud_scheduler_job"
TICK_BODY = 'base64encode("{}")'
CAPACITY = "var.renewer_function.max_instances * var.renewer_function.concurrency"
MAX_ATTEMPTS = 10
# Renewer env -> the expression it must be deployed with.
ENV = {
    "CALSYNC_RENEWAL_SHARDS": "tostring(var.renewal_shards)",
    "CALSYNC_RENEWALS_PER_MINUTE": "tostring(var.renewals_per_minute)",
    "CALSYNC_RENEWAL_SLOT_SECONDS": "tostring(var.renewal_slot_seconds)",
    "CALSYNC_RENEWER_QUEUE": "google_cloud_tasks_queue.renewer.name",
}


def _expr(value: object) -> str:
    text = str(hcl.unquote(value))
    match = re.fullmatch(r"\$\{(.*)\}", text, re.S)
    return " ".join((match.group(1) if match else text).split())


def check(config: hcl.Config) -> list[str]:
    return [*check_tick(config), *check_queue(config), *check_deployed(config)]


def check_tick(config: hcl.Config) -> list[str]:
    problems = []
    jobs = config.resources(SCHEDULER_JOB)
    if not jobs:
        return [f"[renewer] no {SCHEDULER_JOB}: nothing ticks the renewer"]
    for job in jobs:
        if _expr(job.first("http_target", "uri")) != "local.function_urls.renewer":
            problems.append(f"[renewer] {job.address} must target local.function_urls.renewer")
        if _expr(job.first("http_target", "body")) != TICK_BODY:
            problems.append(f"[renewer] {job.address}: body must be {TICK_BODY} (a tick); "
                            "any other body is one shard or a continuation and never fans out")
    return problems


def check_queue(config: hcl.Config) -> list[str]:
    queue = config.resource(QUEUE, "renewer")
    if queue is None:
        return [f"[renewer] no {QUEUE}.renewer: the shard tasks would share the sync queue's "
                "rate limits and retries"]
    where, problems = queue.address, []
    concurrent = _expr(queue.first("rate_limits", "max_concurrent_dispatches"))
    if concurrent != CAPACITY:
        problems.append(f"[renewer] {where}: max_concurrent_dispatches must be {CAPACITY} "
                        f"(what the renewer serves at once), not {concurrent!r}")
    rate = _expr(queue.first("rate_limits", "max_dispatches_per_second"))
    if "var.renewal_shards" not in rate:
        problems.append(f"[renewer] {where}: max_dispatches_per_second must follow "
                        f"var.renewal_shards (every shard of a tick at once), not {rate!r}")
    attempts = queue.first("retry_config", "max_attempts")
    if not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        problems.append(f"[renewer] {where}: retry_config.max_attempts must be 1..{MAX_ATTEMPTS} "
                        f"(the next tick queues every shard again), not {attempts!r}")
    return problems


def check_deployed(config: hcl.Config) -> list[str]:
    problems = []
    functions = config.locals.get("functions")
    env = (functions or {}).get("renewer", {}).get("env") if isinstance(functions, dict) else None
    if not isinstance(env, dict):
        return ["[renewer] local.functions.renewer.env is not a literal map"]
    for name, expected in ENV.items():
        if _expr(env.get(name)) != expected:
            problems.append(f"[renewer] local.functions.renewer.env: {name} must be "
                            f"`{expected}`, not {env.get(name)!r}")
    conditions = [_expr(v.get("condition")) for v in
                  config.variables.get("renewal_shards", {}).get("validation", [])]
    if f"var.renewal_shards <= {CAPACITY}" not in conditions:
        problems.append(f"[renewer] variable renewal_shards needs the validation "
                        f"`var.renewal_shards <= {CAPACITY}`: more shards than the renewer "
                        "serves at once queue behind each other")
    return problems
