locals {
  function_names = {
    webhook = "${var.name_prefix}-webhook"
    worker  = "${var.name_prefix}-sync-worker"
    renewer = "${var.name_prefix}-renewer"
    api     = "${var.name_prefix}-api"
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

  # One entry per function: the consistency checks (tests/terraform) read this
  # map, `env` against functions/config.py and `secrets` against secrets.tf.
  # Each `env` is written out in full (no merge()) so the checks can read it.
  functions = {
    webhook = {
      entry_point = "webhook"
      description = "Receives Google Calendar push notifications and enqueues sync tasks."
      # Google pushes from the internet; see the webhook_public grant in iam.tf.
      ingress = "ALLOW_ALL"
      sizing  = var.webhook_function
      timeout = var.webhook_function.timeout_seconds
      # THREADS: gunicorn's threads under functions-framework = the requests
      # Cloud Run sends one instance (its concurrency); with fewer threads the
      # rest would queue inside a busy instance (infra/tfcheck/sizing_check.py).
      env = {
        LOG_EXECUTION_ID                    = "true"
        THREADS                             = tostring(var.webhook_function.concurrency)
        GOOGLE_CLOUD_PROJECT                = var.project
        CALSYNC_REGION                      = var.region
        CALSYNC_TASKS_QUEUE                 = google_cloud_tasks_queue.sync.name
        CALSYNC_WORKER_URL                  = local.function_urls.worker
        CALSYNC_TASKS_INVOKER_SA            = google_service_account.this["worker_invoker"].email
        CALSYNC_DISPATCH_DEADLINE_SECONDS   = tostring(var.dispatch_deadline_seconds)
        CALSYNC_MIN_SYNC_INTERVAL_SECONDS   = tostring(var.min_sync_interval_seconds)
        CALSYNC_JSON_LOGS                   = "true"
        CALSYNC_NOTIFICATION_RECORD_SECONDS = tostring(var.notification_record_seconds)
        CALSYNC_CHANNEL_CACHE_SECONDS       = tostring(var.channel_cache_seconds)
      }
      secrets = ["channel_token_keys"]
    }
    worker = {
      entry_point = "sync_worker"
      description = "Runs one incremental (or full) sync of a subscription per task."
      ingress     = "ALLOW_INTERNAL_ONLY"
      sizing      = var.worker_function
      # A task's dispatch deadline and the worker's timeout are one setting: a
      # longer run would be retried by Cloud Tasks while still running.
      timeout = var.dispatch_deadline_seconds
      env = {
        LOG_EXECUTION_ID                  = "true"
        THREADS                           = tostring(var.worker_function.concurrency)
        GOOGLE_CLOUD_PROJECT              = var.project
        CALSYNC_REGION                    = var.region
        CALSYNC_TASKS_QUEUE               = google_cloud_tasks_queue.sync.name
        CALSYNC_WORKER_URL                = local.function_urls.worker
        CALSYNC_TASKS_INVOKER_SA          = google_service_account.this["worker_invoker"].email
        CALSYNC_DISPATCH_DEADLINE_SECONDS = tostring(var.dispatch_deadline_seconds)
        CALSYNC_MIN_SYNC_INTERVAL_SECONDS = tostring(var.min_sync_interval_seconds)
        CALSYNC_JSON_LOGS                 = "true"
        CALSYNC_OAUTH_CLIENT_ID           = var.oauth_client_id
        CALSYNC_DELEGATION_SA             = google_service_account.this["delegation"].email
        CALSYNC_LEASE_SECONDS             = tostring(var.lease_seconds)
        CALSYNC_RUN_BUDGET_SECONDS        = tostring(var.run_budget_seconds)
        CALSYNC_CALLS_PER_SYNC_TASK       = tostring(var.calls_per_sync_task)
        CALSYNC_USER_CALLS_PER_MINUTE     = tostring(var.user_calls_per_minute)
        CALSYNC_USER_BUDGET_SHARDS        = tostring(var.user_budget_shards)
        CALSYNC_PAGE_SIZE                 = tostring(var.page_size)
        CALSYNC_FEED_RETENTION_DAYS       = tostring(var.feed_retention_days)
        CALSYNC_COMMIT_BYTES              = tostring(var.commit_bytes)
        # A run opens its subscription's first channel before it lists.
        CALSYNC_WEBHOOK_URL                   = local.webhook_url
        CALSYNC_CHANNEL_TTL_SECONDS           = tostring(var.channel_ttl_seconds)
        CALSYNC_PENDING_CHANNEL_GRACE_SECONDS = tostring(var.pending_channel_grace_seconds)
        CALSYNC_RENEWAL_BACKOFF_SECONDS       = tostring(var.renewal_backoff_seconds)
        CALSYNC_GIVE_UP_ATTEMPTS              = tostring(var.give_up_attempts)
        # The outbox: every committed change entry is published here.
        CALSYNC_PUBSUB_TOPIC            = google_pubsub_topic.changes.name
        CALSYNC_PUBLISH_TIMEOUT_SECONDS = tostring(var.publish_timeout_seconds)
        CALSYNC_PUBLISH_MAX_MESSAGES    = tostring(var.publish_max_messages)
        CALSYNC_PUBLISH_MAX_BYTES       = tostring(var.publish_max_bytes)
        CALSYNC_PUBLISH_RETRY_SECONDS   = tostring(var.publish_retry_seconds)
      }
      secrets = ["channel_token_keys", "credential_keys", "oauth_client_secret"]
    }
    renewer = {
      entry_point = "renew_channels"
      description = "Renews expiring watch channels, schedules safety-net syncs, sweeps pending requests."
      ingress     = "ALLOW_INTERNAL_ONLY"
      sizing      = var.renewer_function
      timeout     = var.renewer_function.timeout_seconds
      env = {
        LOG_EXECUTION_ID                         = "true"
        THREADS                                  = tostring(var.renewer_function.concurrency)
        GOOGLE_CLOUD_PROJECT                     = var.project
        CALSYNC_REGION                           = var.region
        CALSYNC_TASKS_QUEUE                      = google_cloud_tasks_queue.sync.name
        CALSYNC_WORKER_URL                       = local.function_urls.worker
        CALSYNC_TASKS_INVOKER_SA                 = google_service_account.this["worker_invoker"].email
        CALSYNC_DISPATCH_DEADLINE_SECONDS        = tostring(var.dispatch_deadline_seconds)
        CALSYNC_MIN_SYNC_INTERVAL_SECONDS        = tostring(var.min_sync_interval_seconds)
        CALSYNC_JSON_LOGS                        = "true"
        CALSYNC_WEBHOOK_URL                      = local.webhook_url
        CALSYNC_RENEWER_URL                      = local.function_urls.renewer
        CALSYNC_RENEWER_INVOKER_SA               = google_service_account.this["renewer_invoker"].email
        CALSYNC_RENEWER_QUEUE                    = google_cloud_tasks_queue.renewer.name
        CALSYNC_RENEWAL_SHARDS                   = tostring(var.renewal_shards)
        CALSYNC_RENEWALS_PER_MINUTE              = tostring(var.renewals_per_minute)
        CALSYNC_PROJECT_CALLS_PER_MINUTE         = tostring(var.project_calls_per_minute)
        CALSYNC_CALLS_PER_SYNC_TASK              = tostring(var.calls_per_sync_task)
        CALSYNC_USER_CALLS_PER_MINUTE            = tostring(var.user_calls_per_minute)
        CALSYNC_USER_BUDGET_SHARDS               = tostring(var.user_budget_shards)
        CALSYNC_RENEWAL_SLOT_SECONDS             = tostring(var.renewal_slot_seconds)
        CALSYNC_OAUTH_CLIENT_ID                  = var.oauth_client_id
        CALSYNC_DELEGATION_SA                    = google_service_account.this["delegation"].email
        CALSYNC_CHANNEL_TTL_SECONDS              = tostring(var.channel_ttl_seconds)
        CALSYNC_RENEWAL_WINDOW_SECONDS           = tostring(var.renewal_window_seconds)
        CALSYNC_SAFETY_NET_INTERVAL_SECONDS      = tostring(var.safety_net_interval_seconds)
        CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS  = tostring(var.safety_net_max_interval_seconds)
        CALSYNC_SWEEP_AFTER_SECONDS              = tostring(var.sweep_after_seconds)
        CALSYNC_PENDING_CHANNEL_GRACE_SECONDS    = tostring(var.pending_channel_grace_seconds)
        CALSYNC_RENEWAL_BACKOFF_SECONDS          = tostring(var.renewal_backoff_seconds)
        CALSYNC_CHANNEL_CLAIM_SECONDS            = tostring(var.channel_claim_seconds)
        CALSYNC_CHANNEL_RECORD_RETENTION_SECONDS = tostring(var.channel_record_retention_seconds)
        CALSYNC_GIVE_UP_ATTEMPTS                 = tostring(var.give_up_attempts)
        # A sweep starts a new task chain only once the queue's retries are spent.
        CALSYNC_TASK_MAX_BACKOFF_SECONDS = tostring(var.queue_max_backoff_seconds)
        # The outbox sweep: publishing runs for entries left unpublished.
        CALSYNC_PUBSUB_TOPIC         = google_pubsub_topic.changes.name
        CALSYNC_OUTBOX_SWEEP_SECONDS = tostring(var.outbox_sweep_seconds)
        # An unsubscribe waits this long at most for its deletion message.
        CALSYNC_DELETION_WAIT_SECONDS = tostring(var.deletion_wait_seconds)
      }
      secrets = ["channel_token_keys", "credential_keys", "oauth_client_secret"]
    }
    api = {
      entry_point = "api"
      description = "The consumer API: subscriptions, change feed and snapshots under /v1."
      # Callers must present an ID token of a var.api_invokers member whatever
      # the ingress; see var.api_ingress.
      ingress = var.api_ingress
      sizing  = var.api_function
      timeout = var.api_function.timeout_seconds
      env = {
        LOG_EXECUTION_ID                  = "true"
        THREADS                           = tostring(var.api_function.concurrency)
        GOOGLE_CLOUD_PROJECT              = var.project
        CALSYNC_REGION                    = var.region
        CALSYNC_TASKS_QUEUE               = google_cloud_tasks_queue.sync.name
        CALSYNC_WORKER_URL                = local.function_urls.worker
        CALSYNC_TASKS_INVOKER_SA          = google_service_account.this["worker_invoker"].email
        CALSYNC_DISPATCH_DEADLINE_SECONDS = tostring(var.dispatch_deadline_seconds)
        CALSYNC_MIN_SYNC_INTERVAL_SECONDS = tostring(var.min_sync_interval_seconds)
        CALSYNC_JSON_LOGS                 = "true"
        CALSYNC_OAUTH_CLIENT_ID           = var.oauth_client_id
        CALSYNC_FEED_RETENTION_DAYS       = tostring(var.feed_retention_days)
      }
      secrets = ["credential_keys", "oauth_client_secret"]
    }
  }

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

  # The archive keeps one name (see the object below), so each deploy makes
  # the previous archive a noncurrent version: these rules then fire. (With a
  # new name per archive, as before, no object ever had a newer version.)
  versioning {
    enabled = true
  }

  # Keep the last five archives for a rollback...
  lifecycle_rule {
    condition {
      num_newer_versions = 5
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # ...and none of them longer than 30 days after it was replaced.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled["storage.googleapis.com"]]
}

# One object name; a code change uploads a new generation (the md5 differs),
# and the functions deploy that generation. An unchanged tree changes nothing.
resource "google_storage_bucket_object" "source" {
  bucket = google_storage_bucket.source.name
  name   = "source/calsync.zip"
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

  depends_on = [google_project_service.enabled["artifactregistry.googleapis.com"]]
}

resource "google_cloudfunctions2_function" "this" {
  #checkov:skip=CKV_GCP_124:Ingress comes from local.functions: ALLOW_ALL only for the webhook (Google pushes from the internet; HMAC-verified) and the api (every request needs an ID token of a var.api_invokers member); the worker and renewer are internal-only, enforced by tests/terraform.
  for_each = local.functions

  project     = var.project
  name        = local.function_names[each.key]
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = var.python_runtime
    entry_point       = each.value.entry_point
    service_account   = google_service_account.this["builder"].id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket     = google_storage_bucket.source.name
        object     = google_storage_bucket_object.source.name
        generation = google_storage_bucket_object.source.generation
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.this[each.key].email
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    available_memory                 = each.value.sizing.memory
    available_cpu                    = each.value.sizing.cpu
    min_instance_count               = each.value.sizing.min_instances
    max_instance_count               = each.value.sizing.max_instances
    max_instance_request_concurrency = each.value.sizing.concurrency
    timeout_seconds                  = each.value.timeout
    environment_variables            = each.value.env

    dynamic "secret_environment_variables" {
      for_each = each.value.secrets
      content {
        key        = local.secrets[secret_environment_variables.value].env
        project_id = var.project
        secret     = google_secret_manager_secret.this[secret_environment_variables.value].secret_id
        version    = local.secret_version[secret_environment_variables.value]
      }
    }
  }

  depends_on = [
    google_project_service.enabled["cloudfunctions.googleapis.com"],
    google_project_service.enabled["cloudbuild.googleapis.com"],
    google_project_service.enabled["run.googleapis.com"],
    time_sleep.iam_propagation,
  ]
}

moved {
  from = google_cloudfunctions2_function.webhook
  to   = google_cloudfunctions2_function.this["webhook"]
}

moved {
  from = google_cloudfunctions2_function.worker
  to   = google_cloudfunctions2_function.this["worker"]
}

moved {
  from = google_cloudfunctions2_function.renewer
  to   = google_cloudfunctions2_function.this["renewer"]
}
