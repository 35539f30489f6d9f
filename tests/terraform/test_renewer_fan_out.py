"""The renewer's tick, its own queue and the shard fan-out in terraform/
(infra/tfcheck/renewer_check.py), each rule shown to fail on a broken copy."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.tfcheck import consistency, hcl, iam_check, renewer_check

from .conftest import ROOT

SHARDS_ENV = "        CALSYNC_RENEWAL_SHARDS                   = tostring(var.renewal_shards)\n"
CAPACITY = "var.renewer_function.max_instances * var.renewer_function.concurrency"

BREAKAGES: dict[str, tuple[list[tuple[str, str, str]], str]] = {
    "the scheduler posts a shard body": (
        [("scheduler.tf", 'body = base64encode("{}")',
          'body = base64encode("{\\"shard\\": 0, \\"shards\\": 2}")')],
        "google_cloud_scheduler_job.renew: body must be base64encode(\"{}\") (a tick)"),
    "the scheduler ticks another function": (
        [("scheduler.tf", "    uri         = local.function_urls.renewer\n",
          "    uri         = local.function_urls.worker\n")],
        "google_cloud_scheduler_job.renew must target local.function_urls.renewer"),
    "no renewer queue": (
        [("tasks.tf", 'resource "google_cloud_tasks_queue" "renewer"',
          'resource "google_cloud_tasks_queue" "renewals"')],
        "no google_cloud_tasks_queue.renewer"),
    "more in flight than the renewer serves": (
        [("tasks.tf", f"max_concurrent_dispatches = {CAPACITY}",
          "max_concurrent_dispatches = 100")],
        "max_concurrent_dispatches must be " + CAPACITY),
    "dispatch rate not from the shard count": (
        [("tasks.tf", "max_dispatches_per_second = var.renewal_shards",
          "max_dispatches_per_second = 1")],
        "max_dispatches_per_second must follow var.renewal_shards"),
    "unbounded retries": (
        [("tasks.tf", "    max_attempts       = 3\n    min_backoff        = \"10s\"",
          "    max_attempts       = -1\n    min_backoff        = \"10s\"")],
        "retry_config.max_attempts must be 1..10"),
    "shard count not deployed from the variable": (
        [("functions.tf", SHARDS_ENV, SHARDS_ENV.replace("tostring(var.renewal_shards)",
                                                         '"16"'))],
        "CALSYNC_RENEWAL_SHARDS must be `tostring(var.renewal_shards)`"),
    "renewer queue setting missing": (
        [("functions.tf", "        CALSYNC_RENEWER_QUEUE                    = "
          "google_cloud_tasks_queue.renewer.name\n", "")],
        "CALSYNC_RENEWER_QUEUE must be `google_cloud_tasks_queue.renewer.name`"),
    "shard count not held to the renewer's capacity": (
        [("variables.tf", f"    condition     = var.renewal_shards <= {CAPACITY}\n",
          "    condition     = var.renewal_shards <= 32\n")],
        "variable renewal_shards needs the validation"),
}


def test_the_real_configuration_passes(real_config: hcl.Config) -> None:
    assert renewer_check.check(real_config) == []


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_renewer_check_fails_on_broken_copy(
    name: str, load_broken: Callable[..., hcl.Config]
) -> None:
    edits, expected = BREAKAGES[name]
    config = load_broken(*edits)
    found = renewer_check.check(config)
    assert any(expected in p for p in found), found
    assert any(expected in p for p in consistency.check(config, ROOT))  # as Cloud Build runs it


def test_only_the_renewer_may_queue_renewer_tasks(
    real_config: hcl.Config, load_broken: Callable[..., hcl.Config]
) -> None:
    assert ("queue:renewer", "roles/cloudtasks.enqueuer", "sa:renewer") in {
        g.key() for g in iam_check.grants(real_config)}
    config = load_broken(("iam.tf", "  renewer_enqueuers = {\n    renewer = \"renewer\"\n",
                          "  renewer_enqueuers = {\n    renewer = \"renewer\"\n"
                          "    webhook = \"webhook\"\n"))
    found = iam_check.check(config)
    assert any("roles/cloudtasks.enqueuer on queue:renewer for sa:webhook" in p
               for p in found), found
