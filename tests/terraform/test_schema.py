"""terraform/ against the google provider 6.50.0 schema, and proofs the check bites."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.tfcheck import hcl, schema_check

# (edits that break the rule, text the check must report)
BREAKAGES: dict[str, tuple[list[tuple[str, str, str]], str]] = {
    "unknown resource type": (
        [("tasks.tf", 'resource "google_cloud_tasks_queue"', 'resource "google_cloud_task_queue"')],
        "unknown resource type 'google_cloud_task_queue'"),
    "unknown data source type": (
        [("apis.tf", 'data "google_project" "this"', 'data "google_projects_x" "this"')],
        "unknown data source type 'google_projects_x'"),
    "unknown attribute": (
        [("firestore.tf", '  type        = "FIRESTORE_NATIVE"',
          '  type        = "FIRESTORE_NATIVE"\n  mode = "NATIVE"')],
        "google_firestore_database.main: unknown attribute or block 'mode'"),
    "unknown nested attribute": (
        [("tasks.tf", "    max_attempts       =", "    max_attempt        =")],
        "retry_config: unknown attribute or block 'max_attempt'"),
    "unknown block in a push subscription": (
        [("pubsub.tf", "    oidc_token {", "    oidc {")],
        "google_pubsub_subscription.push.push_config: unknown attribute or block 'oidc'"),
    "unknown dead-letter attribute": (
        [("pubsub.tf", "    max_delivery_attempts = var.pubsub_max_delivery_attempts",
          "    max_deliveries = var.pubsub_max_delivery_attempts")],
        "dead_letter_policy: unknown attribute or block 'max_deliveries'"),
    "index scope written as attribute of the field": (
        [("firestore.tf", '      query_scope = "COLLECTION_GROUP"',
          '      scope = "COLLECTION_GROUP"')],
        "index_config.indexes: unknown attribute or block 'scope'"),
    "unknown nested block": (
        [("scheduler.tf", "    oidc_token {", "    oidc {")],
        "http_target: unknown attribute or block 'oidc'"),
    "unknown attribute in dynamic block": (
        [("functions.tf", "      filename = source.value", "      name = source.value")],
        "data.archive_file.source.source: unknown attribute or block 'name'"),
    "block written as attribute": (
        [("functions.tf", "  versioning {\n    enabled = true\n  }",
          "  versioning = {\n    enabled = true\n  }")],
        "'versioning' is a nested block"),
    "single block repeated": (
        [("tasks.tf", "  stackdriver_logging_config {",
          "  stackdriver_logging_config {\n    sampling_ratio = 1\n  }\n"
          "  stackdriver_logging_config {")],
        "block 'stackdriver_logging_config' may appear only once"),
    "required attribute missing": (
        [("iam.tf", '  account_id   = "${var.name_prefix}-${each.value.account_id}"\n', "")],
        "google_service_account.this: required attribute 'account_id' is not set"),
    "required nested attribute missing": (
        [("scheduler.tf", "    uri         = local.function_urls.renewer\n", "")],
        "http_target: required attribute 'uri' is not set"),
    "required block missing": (
        [("secrets.tf", '  secret_id = "${var.name_prefix}-${each.value.secret_id}"\n\n'
          "  replication {\n    auto {}\n  }\n",
          '  secret_id = "${var.name_prefix}-${each.value.secret_id}"\n')],
        "google_secret_manager_secret.this: required block 'replication' is missing"),
    "reference to an undeclared resource": (
        [("scheduler.tf", 'google_service_account.this["renewer_invoker"].email',
          "google_service_account.cron.email")],
        "refers to google_service_account.cron, which is not declared"),
    "reference to an unknown attribute": (
        [("outputs.tf", 'google_service_account.this["delegation"].unique_id',
          'google_service_account.this["delegation"].client_id')],
        "google_service_account.this has no attribute 'client_id'"),
    "unknown attribute in an alert policy": (
        [("monitoring.tf", "      trigger {\n        count = 1",
          "      trigger {\n        counts = 1")],
        "condition_threshold.trigger: unknown attribute or block 'counts'"),
    "unknown dynamic block on a Firestore field": (
        [("firestore.tf", '  dynamic "ttl_config" {', '  dynamic "ttl_policy" {')],
        "google_firestore_field.config: unknown nested block 'ttl_policy' (dynamic)"),
    "unknown attribute of a log metric": (
        [("monitoring.tf", "    metric_kind = \"DELTA\"", "    kind = \"DELTA\"")],
        "metric_descriptor: unknown attribute or block 'kind'"),
    "unknown attribute of the IAM wait": (
        [("iam.tf", '  create_duration = "60s"', '  create_delay = "60s"')],
        "time_sleep.iam_propagation: unknown attribute or block 'create_delay'"),
    "IAM condition without its expression": (
        [("iam.tf", '    expression  = "resource.name.startsWith',
          '    expr        = "resource.name.startsWith')],
        "condition: unknown attribute or block 'expr'"),
    "variable without description": (
        [("variables.tf", '  description = "Prefix of every resource name (functions, queue, '
          'service accounts, secrets)."\n', "")],
        "variable 'name_prefix' has no description"),
    "variable without type": (
        [("variables.tf", 'variable "page_size" {\n  type        = number\n',
          'variable "page_size" {\n')],
        "variable 'page_size' has no type"),
}


def test_real_configuration_matches_provider_schema(
    real_config: hcl.Config, provider_schema: dict[str, Any]
) -> None:
    assert schema_check.check(real_config, provider_schema) == []


def test_every_google_type_used_is_checked(
    real_config: hcl.Config, provider_schema: dict[str, Any]
) -> None:
    google = {b.type for b in real_config.blocks if b.type.startswith("google_")}
    known = set(provider_schema["resources"]) | set(provider_schema["data_sources"])
    assert google and google <= known


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_schema_check_fails_on_broken_copy(
    name: str, load_broken: Callable[..., hcl.Config], provider_schema: dict[str, Any]
) -> None:
    edits, expected = BREAKAGES[name]
    found = schema_check.check(load_broken(*edits), provider_schema)
    assert any(expected in problem for problem in found), found
