locals {
  function_names = {
    webhook = "${var.name_prefix}-webhook"
    worker  = "${var.name_prefix}-sync-worker"
    renewer = "${var.name_prefix}-renewer"
  }

  # Cloud Run's deterministic URL, https://SERVICE-PROJECT_NUMBER.REGION.run.app:
  # a gen2 function's service carries the function's name, so every URL is
  # known before any function exists. Reading the functions' `url` attributes
  # instead would be a cycle: the worker and the renewer enqueue tasks that
  # target themselves.
  function_urls = {
    for key, name in local.function_names :
    key => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }

  # The channel address given to Google (events.watch); must be public HTTPS.
  webhook_url = var.webhook_public_url != "" ? var.webhook_public_url : local.function_urls.webhook

  # Deploy exactly what runs: main.py, requirements.txt and the functions package.
  source_root  = abspath("${path.module}/..")
  source_files = setunion(["main.py", "requirements.txt"], fileset(local.source_root, "functions/**/*.py"))
}

data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/.terraform/calsync-source.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      content  = file("${local.source_root}/${source.value}")
      filename = source.value
    }
  }
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only function source archives, written by the deployer; Cloud Audit Logs already record who wrote what, so a second bucket for usage logs buys nothing.
  project  = var.project
  name     = "${var.project}-${var.name_prefix}-source"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Old archives are only needed to roll back; keep a few.
  lifecycle_rule {
    condition {
      num_newer_versions = 5
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

# The archive's hash is in the object name, so a code change is a new object
# and the functions redeploy; an unchanged tree changes nothing.
resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "source/calsync-${data.archive_file.source.output_sha256}.zip"
  source = data.archive_file.source.output_path
}

# Function images are built into this repository rather than the shared
# gcf-artifacts one, so the build account can be granted write on it alone.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Holds only images built from this repository's own source, no data; Google-managed encryption suffices and a customer-managed key would add a KMS key ring to run and pay for.
  project       = var.project
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  format        = "DOCKER"
  description   = "Images of the calsync functions, built by Cloud Build on deploy."

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.enabled]
}

# --- webhook: public, validates Google's notification and enqueues a sync ------

resource "google_cloudfunctions2_function" "webhook" {
  #checkov:skip=CKV_GCP_124:Google Calendar delivers push notifications from the internet, so the webhook's ingress must allow all traffic; it acts only on a known channel id whose HMAC token verifies.
  project     = var.project
  name        = local.function_names.webhook
  location    = var.region
  description = "Receives Google Calendar push notifications and enqueues sync tasks."

  build_config {
    runtime           = var.python_runtime
    entry_point       = "webhook"
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.webhook.email
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    available_memory                 = var.webhook_function.memory
    available_cpu                    = var.webhook_function.cpu
    min_instance_count               = var.webhook_function.min_instances
    max_instance_count               = var.webhook_function.max_instances
    max_instance_request_concurrency = var.webhook_function.concurrency
    timeout_seconds                  = var.webhook_function.timeout_seconds

    environment_variables = {
      LOG_EXECUTION_ID                    = "true"
      GOOGLE_CLOUD_PROJECT                = var.project
      CALSYNC_REGION                      = var.region
      CALSYNC_TASKS_QUEUE                 = google_cloud_tasks_queue.sync.name
      CALSYNC_WORKER_URL                  = local.function_urls.worker
      CALSYNC_TASKS_INVOKER_SA            = google_service_account.tasks_invoker.email
      CALSYNC_MIN_SYNC_INTERVAL_SECONDS   = tostring(var.min_sync_interval_seconds)
      CALSYNC_NOTIFICATION_RECORD_SECONDS = tostring(var.notification_record_seconds)
      CALSYNC_JSON_LOGS                   = "true"
    }

    secret_environment_variables {
      key        = "CALSYNC_CHANNEL_TOKEN_KEYS"
      project_id = var.project
      secret     = google_secret_manager_secret.channel_token_keys.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_version.channel_token_keys,
    google_secret_manager_secret_iam_member.channel_token_keys_webhook,
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder,
  ]
}

# --- sync worker: internal, invoked by Cloud Tasks only ------------------------

resource "google_cloudfunctions2_function" "worker" {
  project     = var.project
  name        = local.function_names.worker
  location    = var.region
  description = "Runs one incremental (or full) sync of a subscription per task."

  build_config {
    runtime           = var.python_runtime
    entry_point       = "sync_worker"
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.worker.email
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    available_memory                 = var.worker_function.memory
    available_cpu                    = var.worker_function.cpu
    min_instance_count               = var.worker_function.min_instances
    max_instance_count               = var.worker_function.max_instances
    max_instance_request_concurrency = var.worker_function.concurrency
    # Covers a large full sync: 100,000 events are 40 pages of 2,500, each a
    # listing plus batched snapshot and change-feed writes. Capped at 1800 s,
    # the longest Cloud Tasks waits for an HTTP task (see variables.tf).
    timeout_seconds = var.worker_function.timeout_seconds

    environment_variables = {
      LOG_EXECUTION_ID                  = "true"
      GOOGLE_CLOUD_PROJECT              = var.project
      CALSYNC_REGION                    = var.region
      CALSYNC_TASKS_QUEUE               = google_cloud_tasks_queue.sync.name
      CALSYNC_WORKER_URL                = local.function_urls.worker
      CALSYNC_TASKS_INVOKER_SA          = google_service_account.tasks_invoker.email
      CALSYNC_OAUTH_CLIENT_ID           = var.oauth_client_id
      CALSYNC_DELEGATION_SA             = google_service_account.delegation.email
      CALSYNC_MIN_SYNC_INTERVAL_SECONDS = tostring(var.min_sync_interval_seconds)
      CALSYNC_LEASE_SECONDS             = tostring(var.lease_seconds)
      CALSYNC_PAGE_SIZE                 = tostring(var.page_size)
      CALSYNC_JSON_LOGS                 = "true"
    }

    secret_environment_variables {
      key        = "CALSYNC_CREDENTIAL_KEYS"
      project_id = var.project
      secret     = google_secret_manager_secret.credential_keys.secret_id
      version    = "latest"
    }
    secret_environment_variables {
      key        = "CALSYNC_OAUTH_CLIENT_SECRET"
      project_id = var.project
      secret     = google_secret_manager_secret.oauth_client_secret.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_version.credential_keys,
    google_secret_manager_secret_version.oauth_client_secret,
    google_secret_manager_secret_iam_member.credential_keys_worker,
    google_secret_manager_secret_iam_member.oauth_client_secret_worker,
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder,
  ]
}

# --- renewer: internal, invoked by Cloud Scheduler (and its own fan-out tasks) -

resource "google_cloudfunctions2_function" "renewer" {
  project     = var.project
  name        = local.function_names.renewer
  location    = var.region
  description = "Renews expiring watch channels, schedules safety-net syncs, sweeps pending requests."

  build_config {
    runtime           = var.python_runtime
    entry_point       = "renew_channels"
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.renewer.email
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    available_memory                 = var.renewer_function.memory
    available_cpu                    = var.renewer_function.cpu
    min_instance_count               = var.renewer_function.min_instances
    max_instance_count               = var.renewer_function.max_instances
    max_instance_request_concurrency = var.renewer_function.concurrency
    timeout_seconds                  = var.renewer_function.timeout_seconds

    environment_variables = {
      LOG_EXECUTION_ID                    = "true"
      GOOGLE_CLOUD_PROJECT                = var.project
      CALSYNC_REGION                      = var.region
      CALSYNC_TASKS_QUEUE                 = google_cloud_tasks_queue.sync.name
      CALSYNC_WORKER_URL                  = local.function_urls.worker
      CALSYNC_TASKS_INVOKER_SA            = google_service_account.tasks_invoker.email
      CALSYNC_WEBHOOK_URL                 = local.webhook_url
      CALSYNC_RENEWER_URL                 = local.function_urls.renewer
      CALSYNC_OAUTH_CLIENT_ID             = var.oauth_client_id
      CALSYNC_DELEGATION_SA               = google_service_account.delegation.email
      CALSYNC_CHANNEL_TTL_SECONDS         = tostring(var.channel_ttl_seconds)
      CALSYNC_RENEWAL_WINDOW_SECONDS      = tostring(var.renewal_window_seconds)
      CALSYNC_MIN_SYNC_INTERVAL_SECONDS   = tostring(var.min_sync_interval_seconds)
      CALSYNC_SAFETY_NET_INTERVAL_SECONDS = tostring(var.safety_net_interval_seconds)
      CALSYNC_SWEEP_AFTER_SECONDS         = tostring(var.sweep_after_seconds)
      CALSYNC_JSON_LOGS                   = "true"
    }

    secret_environment_variables {
      key        = "CALSYNC_CHANNEL_TOKEN_KEYS"
      project_id = var.project
      secret     = google_secret_manager_secret.channel_token_keys.secret_id
      version    = "latest"
    }
    secret_environment_variables {
      key        = "CALSYNC_CREDENTIAL_KEYS"
      project_id = var.project
      secret     = google_secret_manager_secret.credential_keys.secret_id
      version    = "latest"
    }
    secret_environment_variables {
      key        = "CALSYNC_OAUTH_CLIENT_SECRET"
      project_id = var.project
      secret     = google_secret_manager_secret.oauth_client_secret.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_version.channel_token_keys,
    google_secret_manager_secret_version.credential_keys,
    google_secret_manager_secret_version.oauth_client_secret,
    google_secret_manager_secret_iam_member.channel_token_keys_renewer,
    google_secret_manager_secret_iam_member.credential_keys_renewer,
    google_secret_manager_secret_iam_member.oauth_client_secret_renewer,
    google_project_iam_member.builder,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder,
  ]
}
