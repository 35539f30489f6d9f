resource "google_cloud_scheduler_job" "renew" {
  project     = var.project
  region      = var.region
  name        = "${var.name_prefix}-renew"
  description = "Renewer tick: fans channel renewal out to one task per shard, schedules safety-net syncs and sweeps pending sync requests."
  schedule    = var.renewal_schedule
  time_zone   = "Etc/UTC"
  # The renewer's own timeout; Cloud Scheduler allows at most 30 minutes.
  attempt_deadline = "${var.renewer_function.timeout_seconds}s"

  # The next scheduled run retries anyway; one quick retry covers a cold start.
  retry_config {
    retry_count          = 1
    min_backoff_duration = "10s"
  }

  http_target {
    http_method = "POST"
    uri         = local.function_urls.renewer
    # `{}` is a tick: with var.renewal_shards > 1 it queues one task per shard on
    # the renewer queue, named for the shard and the slot, so this retry or a
    # second tick in the same slot queues nothing more.
    body = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    # The renewer-invoker may call the renewer and nothing else.
    oidc_token {
      service_account_email = google_service_account.this["renewer_invoker"].email
      audience              = local.function_urls.renewer
    }
  }

  depends_on = [
    google_project_service.enabled["cloudscheduler.googleapis.com"],
    google_cloud_run_service_iam_member.invoker["renewer/renewer_invoker"],
  ]
}
