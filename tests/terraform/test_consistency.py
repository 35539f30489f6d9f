"""terraform/ deploys what the code reads and grants no more than the matrix allows.

Each rule is first checked on terraform/ itself, then proven to fail on a
broken copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from functions.config import VARIABLES, WEBHOOK
from infra.tfcheck import consistency, hcl

from .conftest import ROOT

Edit = tuple[str, str, str]


def _append(resource: str) -> Edit:
    return ("extra.tf", "", resource)


def _grant(type_: str, name: str, body: str) -> Edit:
    return _append(f'resource "{type_}" "{name}" {{\n{body}\n}}\n')


WORKER_ENV_PAGE = "      CALSYNC_PAGE_SIZE                 = tostring(var.page_size)\n"
WEBHOOK_ENV_LAST = ("      CALSYNC_NOTIFICATION_RECORD_SECONDS = "
                    "tostring(var.notification_record_seconds)\n")

BREAKAGES: dict[str, tuple[list[Edit], str]] = {
    # --- env: exactly what functions/config.py says each function reads
    "variable read but not set": (
        [("functions.tf", WORKER_ENV_PAGE, "")],
        "worker: CALSYNC_PAGE_SIZE is read by sync_worker but not set"),
    "variable set but not read": (
        [("functions.tf", WEBHOOK_ENV_LAST, WEBHOOK_ENV_LAST + '      CALSYNC_PAGE_SIZE = "10"\n')],
        "webhook: CALSYNC_PAGE_SIZE is not read by webhook"),
    "emulator-only variable set": (
        [("functions.tf", WORKER_ENV_PAGE,
          WORKER_ENV_PAGE + '      CALENDAR_API_ENDPOINT = "http://127.0.0.1:9000/"\n')],
        "CALENDAR_API_ENDPOINT is emulator-only (local_only) and must not be set in production"),
    "secret as plain variable": (
        [("functions.tf", WEBHOOK_ENV_LAST,
          WEBHOOK_ENV_LAST + '      CALSYNC_CHANNEL_TOKEN_KEYS = "k1:c2VjcmV0c2VjcmV0c2VjcmV0"\n')],
        "secret CALSYNC_CHANNEL_TOKEN_KEYS is set as a plain environment variable"),
    "secret variable not set": (
        [("functions.tf", 'key        = "CALSYNC_OAUTH_CLIENT_SECRET"',
          'key        = "CALSYNC_OAUTH_SECRET"')],
        "secret CALSYNC_OAUTH_CLIENT_SECRET is read by sync_worker but not set"),
    "execution ids not logged": (
        [("functions.tf", 'LOG_EXECUTION_ID                  = "true"',
          'LOG_EXECUTION_ID                  = "false"')],
        'worker: LOG_EXECUTION_ID must be "true"'),
    "hand-typed worker URL": (
        [("functions.tf", "CALSYNC_WORKER_URL                  = local.function_urls.worker",
          'CALSYNC_WORKER_URL                  = "https://calsync-sync-worker.example.com"')],
        "CALSYNC_WORKER_URL must come from configuration"),
    "webhook URL not derived": (
        [("functions.tf", ': local.function_urls.webhook', ': "https://example.com/hook"')],
        "local.webhook_url must default to local.function_urls.webhook"),
    "worker ingress open": (
        [("functions.tf", 'ingress_settings                 = "ALLOW_INTERNAL_ONLY"',
          'ingress_settings                 = "ALLOW_INTERNAL_AND_GCLB"')],
        "worker: ingress_settings is 'ALLOW_INTERNAL_AND_GCLB', expected 'ALLOW_INTERNAL_ONLY'"),
    "entry point not in main.py": (
        [("functions.tf", 'entry_point       = "sync_worker"', 'entry_point       = "sync"')],
        "main.py entry point 'sync_worker' is not deployed"),
    # --- secrets
    "secret not declared": (
        [("functions.tf", "google_secret_manager_secret.credential_keys.secret_id",
          "google_secret_manager_secret.credential_keyz.secret_id")],
        "CALSYNC_CREDENTIAL_KEYS refers to a secret that is not declared"),
    "secret readable by a function that does not read it": (
        [_grant("google_secret_manager_secret_iam_member", "extra",
                "  secret_id = google_secret_manager_secret.credential_keys.secret_id\n"
                '  role      = "roles/secretmanager.secretAccessor"\n'
                "  member    = google_service_account.webhook.member")],
        "credential_keys: sa:webhook is granted secretAccessor but runs no function that reads"),
    "secret not readable by a function that reads it": (
        [("secrets.tf", '"channel_token_keys_webhook" {\n  project   = var.project\n'
          "  secret_id = google_secret_manager_secret.channel_token_keys.secret_id\n"
          '  role      = "roles/secretmanager.secretAccessor"\n'
          "  member    = google_service_account.webhook.member",
          '"channel_token_keys_webhook" {\n  project   = var.project\n'
          "  secret_id = google_secret_manager_secret.channel_token_keys.secret_id\n"
          '  role      = "roles/secretmanager.secretAccessor"\n'
          "  member    = google_service_account.renewer.member")],
        "channel_token_keys: sa:webhook reads it but is not granted secretAccessor"),
    "secret accessor project-wide": (
        [_grant("google_project_iam_member", "extra",
                '  project = var.project\n  role    = "roles/secretmanager.secretAccessor"\n'
                "  member  = google_service_account.worker.member")],
        "secretAccessor granted on project; grant it per secret"),
    "secret without a version": (
        [("secrets.tf", "  secret      = google_secret_manager_secret.credential_keys.id\n",
          "  secret      = google_secret_manager_secret.oauth_client_secret.id\n")],
        "google_secret_manager_secret.credential_keys has no version"),
    # --- indexes
    "index missing": (
        [("firestore.tf", 'field_path = "requested_at"', 'field_path = "requested_gen"')],
        "no composite index for the subscriptions query on status ASCENDING, "
        "requested_at ASCENDING"),
    "index in the wrong order": (
        [("firestore.tf", 'field_path = "expiration"\n    order      = "ASCENDING"',
          'field_path = "expiration"\n    order      = "DESCENDING"')],
        "no composite index for the channels query on state ASCENDING, expiration ASCENDING"),
    # --- iam
    "project-level serviceAccountUser": (
        [_grant("google_project_iam_member", "extra",
                '  project = var.project\n  role    = "roles/iam.serviceAccountUser"\n'
                "  member  = google_service_account.worker.member")],
        "roles/iam.serviceAccountUser at project level"),
    "project-level serviceAccountTokenCreator": (
        [_grant("google_project_iam_member", "extra",
                '  project = var.project\n  role    = "roles/iam.serviceAccountTokenCreator"\n'
                "  member  = google_service_account.renewer.member")],
        "roles/iam.serviceAccountTokenCreator at project level"),
    "allUsers on the worker": (
        [_grant("google_cloud_run_service_iam_member", "extra",
                "  location = var.region\n"
                "  service  = google_cloudfunctions2_function.worker.name\n"
                '  role     = "roles/run.invoker"\n  member   = "allUsers"')],
        "allUsers may only invoke the webhook"),
    "allAuthenticatedUsers on a bucket": (
        [_grant("google_storage_bucket_iam_member", "extra",
                "  bucket = google_storage_bucket.source.name\n"
                '  role   = "roles/storage.objectViewer"\n  member = "allAuthenticatedUsers"')],
        "allAuthenticatedUsers may only invoke the webhook"),
    "basic role": (
        [_grant("google_project_iam_member", "extra",
                '  project = var.project\n  role    = "roles/editor"\n'
                "  member  = google_service_account.builder.member")],
        "basic role roles/editor is never granted"),
    "authoritative policy": (
        [_append('data "google_iam_policy" "p" {\n}\n'
                 'resource "google_project_iam_policy" "extra" {\n  project = var.project\n'
                 "  policy_data = data.google_iam_policy.p.policy_data\n}\n")],
        "authoritative IAM policies replace grants made elsewhere"),
    "function runs as the default compute account": (
        [("functions.tf", "service_account_email            = google_service_account.worker.email",
          'service_account_email            = '
          '"${data.google_project.this.number}-compute@developer.gserviceaccount.com"')],
        "uses a default service account"),
    "function without its own account": (
        [("functions.tf",
          "    service_account_email            = google_service_account.renewer.email\n", "")],
        "renewer: must run as google_service_account.renewer"),
    "build with the default account": (
        [("functions.tf", "    service_account   = google_service_account.builder.id\n", "")],
        "build_config.service_account must name a dedicated account"),
    "scheduler token for another account": (
        [("scheduler.tf", "google_service_account.scheduler.email",
          "google_service_account.tasks_invoker.email")],
        "OIDC token must be minted for google_service_account.scheduler"),
    "invoker grant missing": (
        [("iam.tf", "  member   = google_service_account.scheduler.member",
          "  member   = google_service_account.webhook.member")],
        "missing grant: roles/run.invoker on service:renewer for sa:scheduler"),
    "grant outside the matrix": (
        [_grant("google_cloud_tasks_queue_iam_member", "extra",
                "  location = var.region\n  name     = google_cloud_tasks_queue.sync.name\n"
                '  role     = "roles/cloudtasks.enqueuer"\n'
                "  member   = google_service_account.scheduler.member")],
        "unexpected grant roles/cloudtasks.enqueuer on queue:sync for sa:scheduler"),
    "actAs on the wrong account": (
        [("iam.tf", "service_account_id = google_service_account.tasks_invoker.name",
          "service_account_id = google_service_account.delegation.name")],
        "missing grant: roles/iam.serviceAccountUser on service_account:tasks_invoker"),
}


def test_real_configuration_is_consistent(real_config: hcl.Config) -> None:
    assert consistency.check(real_config, ROOT) == []


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
    found = consistency.check_env(real_config, [*VARIABLES, added], ROOT)
    assert found == ["[env] google_cloudfunctions2_function.webhook: CALSYNC_SOMETHING_NEW "
                     "is read by webhook but not set"]


def test_a_new_query_needs_an_index(real_config: hcl.Config) -> None:
    query = {"collection": "channels", "fields": [("sub_id", "ASCENDING"),
                                                  ("created_at", "DESCENDING")]}
    found = consistency.check_indexes(real_config, [query])
    assert found == ["[indexes] no composite index for the channels query on "
                     "sub_id ASCENDING, created_at DESCENDING"]


def test_the_store_declares_the_same_queries() -> None:
    from infra.tfcheck.queries import QUERIES, normalised

    if not (Path(ROOT) / "functions" / "store.py").exists():
        pytest.skip("functions/store.py does not exist yet; infra/tfcheck/queries.py "
                    "stands in for its QUERIES")
    from functions import store

    assert hasattr(store, "QUERIES"), "functions/store.py must expose QUERIES"
    assert normalised(store.QUERIES) == normalised(QUERIES)
