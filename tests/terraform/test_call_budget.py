"""The sync queue's rate follows the Calendar call budget settings
(infra/tfcheck/budget_check.py; issue 19 item 2), each rule shown to fail on a
broken copy."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from functions.config import Settings
from infra.tfcheck import budget_check, consistency, hcl

from .conftest import ROOT

FORMULA = ("min(500, floor((var.project_calls_per_minute - 2 * var.renewals_per_minute "
           "- 500 * var.calls_per_sync_task) "
           "/ (60 * var.calls_per_sync_task)))")
WORKER_CALLS = "        CALSYNC_CALLS_PER_SYNC_TASK       = tostring(var.calls_per_sync_task)\n"
RENEWER_PROJECT = ("        CALSYNC_PROJECT_CALLS_PER_MINUTE         = "
                   "tostring(var.project_calls_per_minute)\n")

BREAKAGES: dict[str, tuple[list[tuple[str, str, str]], str]] = {
    "the queue's rate is a number of its own": (
        [("tasks.tf", "max_dispatches_per_second = local.sync_dispatches_per_second",
          "max_dispatches_per_second = 500")],
        "max_dispatches_per_second must be local.sync_dispatches_per_second"),
    "the renewals' share is forgotten": (
        [("tasks.tf", FORMULA, FORMULA.replace(" - 2 * var.renewals_per_minute", ""))],
        "local.sync_dispatches_per_second"),
    "the queue's burst is not set aside": (
        [("tasks.tf", FORMULA, FORMULA.replace(" - 500 * var.calls_per_sync_task", ""))],
        "functions.config.sync_dispatches_per_second gives"),
    "the calls per task are forgotten": (
        [("tasks.tf", FORMULA, FORMULA.replace(" * var.calls_per_sync_task", ""))],
        "functions.config.sync_dispatches_per_second gives"),
    "the budget's default is not the setting's": (
        [("variables.tf", "  default     = 9000\n", "  default     = 10000\n")],
        "variable project_calls_per_minute defaults to 10000"),
    "the worker does not get the calls per task": (
        [("functions.tf", WORKER_CALLS, "")],
        "local.functions.worker.env: CALSYNC_CALLS_PER_SYNC_TASK"),
    "the renewer does not get the project's budget": (
        [("functions.tf", RENEWER_PROJECT, "")],
        "local.functions.renewer.env: CALSYNC_PROJECT_CALLS_PER_MINUTE"),
}


def test_the_real_configuration_passes(real_config: hcl.Config) -> None:
    assert budget_check.check(real_config) == []
    # What terraform deploys: 9,000 calls a minute less 2,000 for renewals and a burst
    # of 500 tasks, one call a task.
    assert Settings(project="p", region="r", tasks_queue="q",
                    worker_url="u").sync_dispatches_per_second == 108


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_budget_check_fails_on_broken_copy(
    name: str, load_broken: Callable[..., hcl.Config]
) -> None:
    edits, expected = BREAKAGES[name]
    config = load_broken(*edits)
    found = budget_check.check(config)
    assert any(expected in p for p in found), found
    assert any(expected in p for p in consistency.check(config, ROOT))  # as Cloud Build runs it


def test_the_local_is_evaluated_over_variables_only() -> None:
    assert budget_check.evaluate(FORMULA, {"project_calls_per_minute": 9000,
                                           "renewals_per_minute": 1000,
                                           "calls_per_sync_task": 1}) == 108
    assert budget_check.evaluate("var.x + local.y", {"x": 1}) is None
