"""terraform/ deploys what the code reads and grants no more than the matrix allows.

Each rule is first checked on terraform/ itself, then proven to fail on a
broken copy (terraform/ copied to a temporary directory, one rule broken).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from functions.adapters.firestore import catalogue
from functions.config import ALL_FUNCTIONS, VARIABLES, WEBHOOK
from infra.tfcheck import consistency, firestore_check, hcl, monitoring_check

from .conftest import ROOT

Edit = tuple[str, str, str]


def _append(resource: str) -> Edit:
    return ("extra.tf", "", resource)


def _grant(type_: str, name: str, body: str) -> Edit:
    return _append(f'resource "{type_}" "{name}" {{\n{body}\n}}\n')


WORKER_ENV_PAGE = "        CALSYNC_PAGE_SIZE                 = tostring(var.page_size)\n"
WEBHOOK_ENV_LAST = ("        CALSYNC_NOTIFICATION_RECORD_SECONDS = "
                    "tostring(var.notification_record_seconds)\n")
SA = 'google_service_account.this["{}"]'

BREAKAGES: dict[str, tuple[list[Edit], str]] = {
    # --- env: exactly what functions/config.py says each function reads
    "variable read but not set": (
        [("functions.tf", WORKER_ENV_PAGE, "")],
        'this["worker"]: CALSYNC_PAGE_SIZE is read by sync_worker but not set'),
    "variable set but not read": (
        [("functions.tf", WEBHOOK_ENV_LAST,
          WEBHOOK_ENV_LAST + '        CALSYNC_PAGE_SIZE = "10"\n')],
        'this["webhook"]: CALSYNC_PAGE_SIZE is not read by webhook'),
    "emulator-only variable set": (
        [("functions.tf", WORKER_ENV_PAGE,
          WORKER_ENV_PAGE + '        CALENDAR_API_ENDPOINT = "http://127.0.0.1:9000/"\n')],
        "CALENDAR_API_ENDPOINT is emulator-only (local_only) and must not be set in production"),
    "secret as plain variable": (
        [("functions.tf", WEBHOOK_ENV_LAST,
          WEBHOOK_ENV_LAST
          + '        CALSYNC_CHANNEL_TOKEN_KEYS = "k1:c2VjcmV0c2VjcmV0c2VjcmV0"\n')],
        "secret CALSYNC_CHANNEL_TOKEN_KEYS is set as a plain environment variable"),
    "secret variable not set": (
        [("secrets.tf", 'env = "CALSYNC_OAUTH_CLIENT_SECRET"', 'env = "CALSYNC_OAUTH_SECRET"')],
        "secret CALSYNC_OAUTH_CLIENT_SECRET is read by sync_worker but not set"),
    "execution ids not logged": (
        [("functions.tf", 'LOG_EXECUTION_ID                    = "true"',
          'LOG_EXECUTION_ID                    = "false"')],
        'this["webhook"]: LOG_EXECUTION_ID must be "true"'),
    "hand-typed worker URL": (
        [("functions.tf", "CALSYNC_WORKER_URL                = local.function_urls.worker",
          'CALSYNC_WORKER_URL                = "https://calsync-sync-worker.example.com"')],
        "CALSYNC_WORKER_URL must come from configuration"),
    "webhook URL not derived": (
        [("functions.tf", ': local.function_urls.webhook', ': "https://example.com/hook"')],
        "local.webhook_url must default to local.function_urls.webhook"),
    "worker ingress open": (
        [("functions.tf", 'ingress     = "ALLOW_INTERNAL_ONLY"',
          'ingress     = "ALLOW_INTERNAL_AND_GCLB"')],
        """this["worker"]: ingress_settings is 'ALLOW_INTERNAL_AND_GCLB'"""),
    "entry point not in main.py": (
        [("functions.tf", 'entry_point = "sync_worker"', 'entry_point = "sync"')],
        "main.py entry point 'sync_worker' is not deployed"),
    "env not a literal map": (
        [("functions.tf", "environment_variables            = each.value.env",
          "environment_variables            = merge(each.value.env, {})")],
        "environment_variables must be a literal map"),
    # --- secrets
    "secret not declared": (
        [("functions.tf", "google_secret_manager_secret.this[secret_environment_variables",
          "google_secret_manager_secret.thus[secret_environment_variables")],
        "CALSYNC_CREDENTIAL_KEYS refers to a secret that is not declared"),
    "secret readable by a function that does not read it": (
        [("secrets.tf", '    "credential_keys/api"',
          '    "credential_keys/webhook" = { secret = "credential_keys", account = "webhook" }\n'
          '    "credential_keys/api"')],
        "['credential_keys']: sa:webhook is granted secretAccessor but runs no function"),
    "secret not readable by a function that reads it": (
        [("secrets.tf", '    "channel_token_keys/webhook"  = { secret = "channel_token_keys", '
          'account = "webhook" }\n', "")],
        "['channel_token_keys']: sa:webhook reads it but is not granted secretAccessor"),
    "secret accessor project-wide": (
        [_grant("google_project_iam_member", "extra",
                '  project = var.project\n  role    = "roles/secretmanager.secretAccessor"\n'
                f"  member  = {SA.format('worker')}.member")],
        "secretAccessor granted on project; grant it per secret"),
    "secret without a version": (
        [("secrets.tf", "  for_each = local.secrets\n\n  secret                 =",
          "  for_each = { channel_token_keys = 1 }\n\n  secret                 =")],
        "['credential_keys'] has no version: functions reading it would fail to deploy"),
    "secret read at latest": (
        [("functions.tf", "version    = local.secret_version[secret_environment_variables.value]",
          'version    = "latest"')],
        "CALSYNC_CREDENTIAL_KEYS reads version 'latest'"),
    "secret version not waited for": (
        [("secrets.tf", "lookup(var.secret_versions, key, "
          "google_secret_manager_secret_version.initial[key].version)",
          'lookup(var.secret_versions, key, "1")')],
        "does not come from a google_secret_manager_secret_version"),
    # --- the operator CLI's environment
    "CLI without the topic": (
        [("outputs.tf", "    CALSYNC_PUBSUB_TOPIC       = google_pubsub_topic.changes.name\n", "")],
        "output cli_environment lacks CALSYNC_PUBSUB_TOPIC"),
    "CLI given a different queue": (
        [("outputs.tf", "    CALSYNC_TASKS_QUEUE        = google_cloud_tasks_queue.sync.name",
          '    CALSYNC_TASKS_QUEUE        = "calsync-sync"')],
        "output cli_environment: CALSYNC_TASKS_QUEUE must be `google_cloud_tasks_queue.sync.name`"),
    "CLI shown a secret": (
        [("outputs.tf", "    CALSYNC_OAUTH_CLIENT_ID    = var.oauth_client_id\n",
          "    CALSYNC_OAUTH_CLIENT_ID    = var.oauth_client_id\n"
          '    CALSYNC_CREDENTIAL_KEYS    = "k1:abc"\n')],
        "output cli_environment shows CALSYNC_CREDENTIAL_KEYS, which is a secret"),
    # --- iam
    "project-level serviceAccountUser": (
        [_grant("google_project_iam_member", "extra",
                '  project = var.project\n  role    = "roles/iam.serviceAccountUser"\n'
                f"  member  = {SA.format('worker')}.member")],
        "roles/iam.serviceAccountUser at project level"),
    "project-level serviceAccountTokenCreator": (
        [_grant("google_project_iam_member", "extra",
                '  project = var.project\n  role    = "roles/iam.serviceAccountTokenCreator"\n'
                f"  member  = {SA.format('renewer')}.member")],
        "roles/iam.serviceAccountTokenCreator at project level"),
    "allUsers on the worker": (
        [_grant("google_cloud_run_service_iam_member", "extra",
                "  location = var.region\n"
                '  service  = google_cloudfunctions2_function.this["worker"].name\n'
                '  role     = "roles/run.invoker"\n  member   = "allUsers"')],
        "allUsers may only invoke the webhook"),
    "allUsers on the api": (
        [("iam.tf", "  member   = each.value\n", '  member   = "allUsers"\n')],
        "allUsers may only invoke the webhook, not hold roles/run.invoker on service:api"),
    "allAuthenticatedUsers on a bucket": (
        [_grant("google_storage_bucket_iam_member", "extra",
                "  bucket = google_storage_bucket.source.name\n"
                '  role   = "roles/storage.objectViewer"\n  member = "allAuthenticatedUsers"')],
        "allAuthenticatedUsers may only invoke the webhook"),
    "basic role": (
        [_grant("google_project_iam_member", "extra",
                '  project = var.project\n  role    = "roles/editor"\n'
                f"  member  = {SA.format('builder')}.member")],
        "basic role roles/editor is never granted"),
    "authoritative policy": (
        [_append('data "google_iam_policy" "p" {\n}\n'
                 'resource "google_project_iam_policy" "extra" {\n  project = var.project\n'
                 "  policy_data = data.google_iam_policy.p.policy_data\n}\n")],
        "authoritative IAM policies replace grants made elsewhere"),
    "function runs as the default compute account": (
        [("functions.tf",
          "service_account_email            = google_service_account.this[each.key].email",
          'service_account_email            = '
          '"${data.google_project.this.number}-compute@developer.gserviceaccount.com"')],
        "uses a default service account"),
    "function without its own account": (
        [("functions.tf", "    service_account_email            = "
          "google_service_account.this[each.key].email\n", "")],
        """this["renewer"]: must run as google_service_account.this['renewer']"""),
    "build with the default account": (
        [("functions.tf", '    service_account   = google_service_account.this["builder"].id\n',
          "")],
        "build_config.service_account must name a dedicated account"),
    "grant outside the matrix": (
        [_grant("google_cloud_tasks_queue_iam_member", "extra",
                "  location = var.region\n  name     = google_cloud_tasks_queue.sync.name\n"
                '  role     = "roles/cloudtasks.enqueuer"\n'
                f"  member   = {SA.format('renewer_invoker')}.member")],
        "unexpected grant roles/cloudtasks.enqueuer on queue:sync for sa:renewer_invoker"),
    "actAs on the wrong account": (
        [("iam.tf",
          '"webhook/worker_invoker"  = { account = "webhook", target = "worker_invoker" }',
          '"webhook/worker_invoker"  = { account = "webhook", target = "delegation" }')],
        "[invokers] sa:webhook enqueues sync tasks but may not act as sa:worker_invoker"),
    "grant over a computed map": (
        [_grant("google_service_account_iam_member", "extra",
                "  for_each           = { for k, v in local.act_as : k => v }\n"
                "  service_account_id = google_service_account.this[each.value.target].name\n"
                '  role               = "roles/iam.serviceAccountUser"\n'
                "  member             = google_service_account.this[each.value.account].member")],
        "unexpected grant roles/iam.serviceAccountUser on service_account:this for sa:this"),
    # --- one invoker per target
    "one invoker for both targets": (
        [("iam.tf", '{ function = "renewer", account = "renewer_invoker" }',
          '{ function = "renewer", account = "worker_invoker" }')],
        "sa:worker_invoker may invoke renewer, worker: one invoker account per target"),
    "webhook may act as the renewer's invoker": (
        [("iam.tf", '    "renewer/renewer_invoker" = { account = "renewer", target = '
          '"renewer_invoker" }\n',
          '    "renewer/renewer_invoker" = { account = "renewer", target = '
          '"renewer_invoker" }\n'
          '    "webhook/renewer_invoker" = { account = "webhook", target = '
          '"renewer_invoker" }\n')],
        "unexpected grant roles/iam.serviceAccountUser on service_account:renewer_invoker "
        "for sa:webhook"),
    "scheduler token for the worker's invoker": (
        [("scheduler.tf", 'google_service_account.this["renewer_invoker"].email',
          'google_service_account.this["worker_invoker"].email')],
        "OIDC token must be minted for sa:renewer_invoker"),
    # --- builds
    "builder cannot read gcf-v2-sources": (
        [("iam.tf", 'buckets/gcf-v2-sources-\\")', 'buckets/calsync-\\")')],
        "[builds] the build account sa:builder cannot read Google's gcf-v2-sources"),
    "functions do not wait for IAM": (
        [("functions.tf", "    time_sleep.iam_propagation,\n", "")],
        "does not wait for IAM propagation of google_project_iam_member.builder_gcf_sources"),
    "the wait does not cover the builder's grant": (
        [("iam.tf", "    google_project_iam_member.builder_gcf_sources,\n", "")],
        "does not wait for IAM propagation of google_project_iam_member.builder_gcf_sources"),
    "grants changed later do not wait": (
        [("iam.tf", "      [for grant in google_service_account_iam_member.act_as : grant.id],\n",
          "")],
        "time_sleep.iam_propagation: its triggers do not name "
        "google_service_account_iam_member.act_as"),
    # --- every resource waits for its API
    "service accounts before the IAM API": (
        [("iam.tf", '  depends_on = [google_project_service.enabled["iam.googleapis.com"]]\n',
          "")],
        "google_service_account.this does not wait for iam.googleapis.com"),
    "project read before Cloud Resource Manager": (
        [("apis.tf", '  depends_on = [google_project_service.enabled['
          '"cloudresourcemanager.googleapis.com"]]\n', "")],
        "data.google_project.this does not wait for cloudresourcemanager.googleapis.com"),
    "queue before Cloud Tasks": (
        [("tasks.tf", '  depends_on = [google_project_service.enabled['
          '"cloudtasks.googleapis.com"]]\n', "")],
        "google_cloud_tasks_queue.sync does not wait for cloudtasks.googleapis.com"),
    "API not enabled": (
        [("apis.tf", '    "monitoring.googleapis.com",\n', "")],
        "needs monitoring.googleapis.com, which apis.tf does not enable"),
    "resource type without a known API": (
        [_append('resource "google_bigquery_dataset" "d" {\n  dataset_id = "x"\n}\n')],
        "no API known for google_bigquery_dataset"),
    # --- log metrics count lines the code writes, and alert
    "metric on a message nobody logs": (
        [("monitoring.tf", '(\\"sync run crashed\\" OR', '(\\"sync run failed hard\\" OR')],
        "counts 'sync run failed hard', which functions/ never logs"),
    "metric on an outcome nobody logs": (
        [("monitoring.tf", 'jsonPayload.outcome=\\"transient\\"',
          'jsonPayload.outcome=\\"transiant\\"')],
        "counts 'transiant', which functions/ never logs"),
    "metric without an alert": (
        # the webhook_5xx alert pointed at another metric
        [("monitoring.tf", 'this["webhook_5xx"].name}', 'this["crashes"].name}')],
        'google_logging_metric.this["webhook_5xx"] has no alert policy'),
    "alert notifying nobody": (
        [("monitoring.tf", "notification_channels = var.alert_notification_channels",
          "notification_channels = []")],
        "must notify var.alert_notification_channels"),
    # --- the committed tfvars: settings only
    "secret in the tfvars": (
        [("calsync.auto.tfvars", 'oauth_client_id = ""',
          'oauth_client_id = ""\noauth_client_secret = "GOCSPX-abc"')],
        "calsync.auto.tfvars: oauth_client_secret is not a declared variable"),
    "key ring in the tfvars": (
        [("calsync.auto.tfvars", 'oauth_client_id = ""',
          'oauth_client_id = "k1:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"')],
        "oauth_client_id holds a value shaped like a key ring"),
    "sensitive variable in the tfvars": (
        [("variables.tf", 'variable "oauth_client_id" {\n  type        = string\n',
          'variable "oauth_client_id" {\n  type        = string\n  sensitive   = true\n')],
        "calsync.auto.tfvars: oauth_client_id is sensitive"),
    "secret-looking variable in the tfvars": (
        [("variables.tf", 'variable "oauth_client_id" {', 'variable "signing_key" {\n'
          '  type        = string\n  description = "x"\n  default     = ""\n}\n\n'
          'variable "oauth_client_id" {'),
         ("calsync.auto.tfvars", 'oauth_client_id = ""',
          'oauth_client_id = ""\nsigning_key     = "abc"')],
        "calsync.auto.tfvars: signing_key looks like a secret"),
    # --- Firestore against functions/catalogue.py
    "index missing": (
        [("firestore.tf", '{ path = "requested_at", order = "ASCENDING" }',
          '{ path = "requested_gen", order = "ASCENDING" }')],
        "no composite index for the subscriptions query on status ASCENDING, "
        "requested_at ASCENDING"),
    "index in the wrong order": (
        [("firestore.tf", '{ path = "expiration", order = "ASCENDING" }',
          '{ path = "expiration", order = "DESCENDING" }')],
        "no composite index for the channels query on state ASCENDING, expiration ASCENDING"),
    "exemption of a queried field": (
        [("firestore.tf", '    "events/event" ',
          '    "events/_deleted" = { collection = "events", field = "_deleted", exempt = true, '
          'ttl = false }\n    "events/event" ')],
        "the exemption of events/_deleted removes the index a query needs"),
    "exemption missing": (
        [("firestore.tf", '{ collection = "changes", field = "at", exempt = true, ttl = false }',
          '{ collection = "changes", field = "at", exempt = false, ttl = false }')],
        "changes/at is in catalogue.INDEX_EXEMPTIONS but not exempt"),
    "TTL policy missing": (
        [("firestore.tf", 'field = "expire_at", exempt = true, ttl = true',
          'field = "expire_at", exempt = true, ttl = false')],
        "changes/expire_at is in catalogue.TTL_FIELDS but has no TTL policy"),
    "TTL on another field": (
        [("firestore.tf", '{ collection = "changes", field = "at", exempt = true, ttl = false }',
          '{ collection = "changes", field = "at", exempt = true, ttl = true }')],
        "changes/at has a TTL policy but is not in catalogue.TTL_FIELDS"),
    "field configured twice": (
        [_grant("google_firestore_field", "extra",
                '  database   = google_firestore_database.main.name\n'
                '  collection = "changes"\n  field      = "etag"')],
        "configures changes/etag again"),
}


def pending(variables: list[Any], known_functions: tuple[str, ...]) -> set[str]:
    """What the real tree must report while the code catches up.

    Terraform deploys the `api` function, a few settings and metrics on log
    lines before the code on other branches has them; each is reported, and
    disappears from this list as soon as config.py / main.py / the code have it.
    """
    names = {v.name for v in variables}
    expected: set[str] = set()
    main_py = (ROOT / "main.py").read_text()
    if "def api(" not in main_py:
        expected.add("[env] google_cloudfunctions2_function.this[\"api\"] uses entry point "
                      "'api', which main.py does not define")
    if "api" not in known_functions:
        expected.add("does not know the function 'api'")
    ahead = {"webhook": ["CALSYNC_DISPATCH_DEADLINE_SECONDS"],
             "worker": ["CALSYNC_DISPATCH_DEADLINE_SECONDS", "CALSYNC_FEED_RETENTION_DAYS"],
             "renewer": ["CALSYNC_DISPATCH_DEADLINE_SECONDS", "CALSYNC_RENEWER_INVOKER_SA"]}
    logged = monitoring_check.logged_names(ROOT)
    for name in monitoring_check.AHEAD_OF_CODE:
        if name not in logged:
            expected.add(f"counts {name!r}, which functions/ does not log yet")
    for function, variables_ahead in ahead.items():
        for name in variables_ahead:
            if name not in names:
                expected.add(f'this["{function}"]: {name} is deployed ahead of '
                             "functions/config.py")
    return expected


def test_real_configuration_is_consistent(real_config: hcl.Config) -> None:
    found = consistency.check(real_config, ROOT)
    expected = pending(list(VARIABLES), ALL_FUNCTIONS)
    unexplained = [p for p in found if not any(e in p for e in expected)]
    assert unexplained == []
    for text in expected:
        assert any(text in p for p in found), (text, found)


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_consistency_check_fails_on_broken_copy(
    name: str, load_broken: Callable[..., hcl.Config]
) -> None:
    edits, expected = BREAKAGES[name]
    found = consistency.check(load_broken(*edits), ROOT)
    assert any(expected in problem for problem in found), found


def test_a_new_setting_must_be_deployed(real_config: hcl.Config) -> None:
    """The env check follows functions/config.py: a variable added there fails it."""
    template = next(v for v in VARIABLES if v.name == "CALSYNC_NOTIFICATION_RECORD_SECONDS")
    added = dataclasses.replace(template, name="CALSYNC_SOMETHING_NEW", used_by=(WEBHOOK,))
    found = consistency.check_env(real_config, [*VARIABLES, added], ROOT, ALL_FUNCTIONS)
    assert ('[env] google_cloudfunctions2_function.this["webhook"]: CALSYNC_SOMETHING_NEW '
            "is read by webhook but not set") in found


def test_a_function_config_does_not_know_is_reported(real_config: hcl.Config) -> None:
    found = consistency.check_env(real_config, VARIABLES, ROOT,
                                  [f for f in ALL_FUNCTIONS if f != WEBHOOK])
    message = next(p for p in found if 'this["webhook"]' in p and "does not know" in p)
    assert "CALSYNC_NOTIFICATION_RECORD_SECONDS" in message
    assert "CALSYNC_CHANNEL_TOKEN_KEYS" in message


def test_a_variable_once_declared_follows_the_ordinary_rules(real_config: hcl.Config) -> None:
    """Declaring a variable ahead of config for the wrong function is an ordinary error."""
    template = next(v for v in VARIABLES if v.name == "CALSYNC_PAGE_SIZE")
    declared = dataclasses.replace(template, name="CALSYNC_FEED_RETENTION_DAYS",
                                   used_by=("sync_worker",))
    others = [v for v in VARIABLES if v.name != declared.name]
    found = consistency.check_env(real_config, [*others, declared], ROOT, ALL_FUNCTIONS)
    assert not any("CALSYNC_FEED_RETENTION_DAYS is deployed ahead" in p for p in found)
    assert any('this["api"]: CALSYNC_FEED_RETENTION_DAYS is not read by api' in p
               for p in found)


def test_a_new_query_needs_an_index(real_config: hcl.Config) -> None:
    query = {"collection": "channels", "fields": [("sub_id", "ASCENDING"),
                                                  ("created_at", "DESCENDING")]}
    found = firestore_check.check_indexes(real_config, [query])
    assert found == ["[indexes] no composite index for the channels query on "
                     "sub_id ASCENDING, created_at DESCENDING"]


def test_a_new_exemption_in_the_catalogue_must_be_deployed(real_config: hcl.Config) -> None:
    found = firestore_check.check_fields(
        real_config, [*catalogue.INDEX_EXEMPTIONS, ("events", "description")],
        catalogue.TTL_FIELDS, catalogue.queried_fields())
    assert found == ["[firestore] events/description is in catalogue.INDEX_EXEMPTIONS but "
                     "not exempt (google_firestore_field with an empty index_config)"]


def test_the_checks_read_the_catalogue() -> None:
    from infra.tfcheck import queries

    assert queries.QUERIES is catalogue.QUERIES


def test_the_store_declares_the_same_queries() -> None:
    from infra.tfcheck.queries import QUERIES, normalised

    assert (Path(ROOT) / "functions" / "adapters" / "firestore" / "store.py").exists()
    from functions.adapters.firestore import store

    assert hasattr(store, "QUERIES"), "functions/adapters/firestore/store.py must expose QUERIES"
    assert normalised(store.QUERIES) == normalised(QUERIES)
