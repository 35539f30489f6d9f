"""Each function serves as many requests at once as Cloud Run sends it.

functions-framework runs gunicorn with `THREADS` threads (default: 4 per CPU
the container sees). Cloud Run sends an instance up to
`max_instance_request_concurrency` requests before it starts another one. With
more requests allowed than threads, the rest wait inside a busy instance while
Cloud Run sees spare capacity and does not scale out; at max instances it
answers 429, which Google's push notifications never retry. So every function
sets `THREADS` in its environment from the very value that sets its
concurrency: `tostring(<sizing>.concurrency)` beside
`max_instance_request_concurrency = each.value.sizing.concurrency`.
"""

from __future__ import annotations

from typing import Any

from infra.tfcheck import hcl
from infra.tfcheck.iam_check import FUNCTION

THREADS = "THREADS"
CONCURRENCY = "${each.value.sizing.concurrency}"


def check(config: hcl.Config) -> list[str]:
    problems: list[str] = []
    function = config.resource(FUNCTION, "this")
    functions = config.locals.get("functions")
    if function is None or not isinstance(functions, dict):
        return ["[sizing] expected google_cloudfunctions2_function.this with for_each over "
                "local.functions"]
    service = (function.body.get("service_config") or [{}])[0]
    concurrency = service.get("max_instance_request_concurrency")
    if concurrency != CONCURRENCY:
        problems.append(f"[sizing] {function.address}: max_instance_request_concurrency must "
                        f"be each.value.sizing.concurrency (what THREADS is set from), "
                        f"not {concurrency!r}")
    for key, entry in sorted(functions.items()):
        problems += _threads_problems(key, entry)
    return problems


def _threads_problems(key: str, entry: Any) -> list[str]:
    where = f"[sizing] local.functions.{key}"
    if not isinstance(entry, dict):
        return [f"{where}: not a literal object"]
    sizing = hcl.unquote(entry.get("sizing"))
    env = entry.get("env")
    if not isinstance(env, dict):
        env = {}
    expected = f"tostring({sizing}.concurrency)"
    threads = hcl.unquote(env.get(THREADS))
    if threads is None:
        return [f"{where}: env has no {THREADS}; functions-framework then runs 4 threads per "
                f"CPU whatever the concurrency, and requests queue inside a busy instance "
                f"(set {THREADS} = {expected})"]
    if threads != expected:
        return [f"{where}: {THREADS} is {threads!r}, not {expected!r}: the threads and the "
                "requests Cloud Run sends an instance must be one value"]
    return []
