"""THREADS (gunicorn's threads under functions-framework) equals each function's
max_instance_request_concurrency, so Cloud Run scales out instead of queueing
requests inside a busy instance (and answering 429 at max instances)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.tfcheck import consistency, hcl, sizing_check

from .conftest import ROOT

WEBHOOK_THREADS = ("        THREADS                             = "
                   "tostring(var.webhook_function.concurrency)\n")

BREAKAGES: dict[str, tuple[list[tuple[str, str, str]], str]] = {
    "THREADS missing": (
        [("functions.tf", WEBHOOK_THREADS, "")],
        "local.functions.webhook: env has no THREADS"),
    "THREADS from another function's sizing": (
        [("functions.tf", WEBHOOK_THREADS,
          WEBHOOK_THREADS.replace("var.webhook_function", "var.api_function"))],
        "local.functions.webhook: THREADS is 'tostring(var.api_function.concurrency)'"),
    "THREADS as a literal": (
        [("functions.tf", WEBHOOK_THREADS,
          WEBHOOK_THREADS.replace("tostring(var.webhook_function.concurrency)", '"8"'))],
        "local.functions.webhook: THREADS is '8'"),
    "concurrency not from the sizing": (
        [("functions.tf", "max_instance_request_concurrency = each.value.sizing.concurrency",
          "max_instance_request_concurrency = 80")],
        "max_instance_request_concurrency must be each.value.sizing.concurrency"),
}


def test_threads_match_concurrency(real_config: hcl.Config) -> None:
    assert sizing_check.check(real_config) == []


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_sizing_check_fails_on_broken_copy(
    name: str, load_broken: Callable[..., hcl.Config]
) -> None:
    edits, expected = BREAKAGES[name]
    config = load_broken(*edits)
    assert any(expected in p for p in sizing_check.check(config)), sizing_check.check(config)
    # and through the whole consistency check, which Cloud Build runs
    assert any(expected in p for p in consistency.check(config, ROOT))


def test_threads_is_a_deployed_variable_not_a_setting(real_config: hcl.Config) -> None:
    """THREADS is read by functions-framework, not functions/config.py: the env
    check expects it on every function rather than calling it unread."""
    found = consistency.check(real_config, ROOT)
    assert not any("THREADS" in p for p in found), found
