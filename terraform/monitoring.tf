# Log-based metrics over the functions' JSON log lines (functions/logs.py) and
# Cloud Run's request logs, and one alert policy per metric. Gen2 functions
# log as their Cloud Run service: resource.type "cloud_run_revision", service
# name = function name. Notification channels come from
# var.alert_notification_channels (ids created elsewhere, e.g. in the console).

locals {
  run_resource = "resource.type=\"cloud_run_revision\""

  log_metrics = {
    # A sync run that failed (permanent: the subscription went to error, or
    # transient: the task is retried) or crashed.
    sync_failures = {
      description = "Sync runs that failed, failed transiently or crashed."
      filter      = "${local.run_resource} AND resource.labels.service_name=\"${local.function_names.worker}\" AND ((jsonPayload.message=\"sync run\" AND jsonPayload.outcome=(\"failed\" OR \"transient\")) OR jsonPayload.message=\"sync run crashed\")"
      unit        = "1"
      value_field = ""
    }
    # A permanent failure puts the subscription in `error`.
    subscriptions_in_error = {
      description = "Sync runs that ended with the subscription in error (outcome failed)."
      filter      = "${local.run_resource} AND resource.labels.service_name=\"${local.function_names.worker}\" AND jsonPayload.message=\"sync run\" AND jsonPayload.outcome=\"failed\""
      unit        = "1"
      value_field = ""
    }
    # A channel the renewer could not replace expires without a successor.
    channel_renewal_failures = {
      description = "Channel renewals that failed (the channel may expire without a replacement)."
      filter      = "${local.run_resource} AND resource.labels.service_name=\"${local.function_names.renewer}\" AND jsonPayload.message=\"channel renewal failed\""
      unit        = "1"
      value_field = ""
    }
    # Each renewer run reports how long the oldest pending sync request waits.
    oldest_pending_age = {
      description = "Age in seconds of the oldest pending sync request, as each renewer run saw it."
      filter      = "${local.run_resource} AND resource.labels.service_name=\"${local.function_names.renewer}\" AND jsonPayload.message=\"renewer run\" AND jsonPayload.oldest_pending_age_s>=0"
      unit        = "s"
      value_field = "jsonPayload.oldest_pending_age_s"
    }
    # Cloud Run's request log of the webhook service.
    webhook_5xx = {
      description = "Webhook requests answered with a 5xx status (Google redelivers, then gives up)."
      filter      = "${local.run_resource} AND resource.labels.service_name=\"${local.function_names.webhook}\" AND log_id(\"run.googleapis.com/requests\") AND httpRequest.status>=500"
      unit        = "1"
      value_field = ""
    }
  }

  alerts = {
    sync_failures = {
      display_name = "calsync: sync runs failing"
      threshold    = var.alert_thresholds.sync_failures_per_5m
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "Sync runs failed, failed transiently or crashed more often than usual in 5 minutes. Logs: jsonPayload.message=\"sync run\" with outcome failed|transient, or \"sync run crashed\" (worker). `python -m functions.cli status` lists subscriptions in error."
    }
    subscriptions_in_error = {
      display_name = "calsync: subscriptions going to error"
      threshold    = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "A sync run put a subscription in error (revoked grant, calendar gone, event Firestore refuses). `python -m functions.cli status --json` shows last_error; resume it once fixed."
    }
    channel_renewal_failures = {
      display_name = "calsync: channel renewals failing"
      threshold    = var.alert_thresholds.renewal_failures_per_5m
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "The renewer could not replace channels (\"channel renewal failed\"); a channel that expires without a successor delivers nothing until the safety net syncs."
    }
    oldest_pending_age = {
      display_name = "calsync: sync requests waiting too long"
      threshold    = var.alert_thresholds.oldest_pending_age_seconds
      aligner      = "ALIGN_PERCENTILE_99"
      reducer      = "REDUCE_MAX"
      content      = "The oldest pending sync request is older than the threshold (renewer run, oldest_pending_age_s): tasks are not being served (queue paused, worker failing, dispatch limits)."
    }
    webhook_5xx = {
      display_name = "calsync: webhook answering 5xx"
      threshold    = var.alert_thresholds.webhook_5xx_per_5m
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "The webhook answered 5xx (usually a failed enqueue or Firestore unavailable); Google redelivers for a while, then the change waits for the safety net."
    }
  }
}

resource "google_logging_metric" "this" {
  for_each = local.log_metrics

  project     = var.project
  name        = "${var.name_prefix}/${replace(each.key, "_", "-")}"
  description = each.value.description
  filter      = each.value.filter

  # Counters count matching lines; the age metric is a distribution of the
  # extracted value (0 s to about 1.5 days in 20 exponential buckets).
  value_extractor = each.value.value_field == "" ? null : "EXTRACT(${each.value.value_field})"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = each.value.value_field == "" ? "INT64" : "DISTRIBUTION"
    unit        = each.value.unit
  }

  dynamic "bucket_options" {
    for_each = each.value.value_field == "" ? [] : [1]
    content {
      exponential_buckets {
        num_finite_buckets = 20
        growth_factor      = 2
        scale              = 1
      }
    }
  }

  depends_on = [google_project_service.enabled["logging.googleapis.com"]]
}

# A new log-based metric can take minutes to become visible to Cloud
# Monitoring; an alert policy created before that fails with "Cannot find
# metric(s)" (provider issue 11102). Wait after (re)creating metrics; if an
# apply still meets the error, run it again.
resource "time_sleep" "log_metrics" {
  create_duration = "180s"

  triggers = {
    metrics = join(",", [for metric in google_logging_metric.this : metric.name])
  }
}

resource "google_monitoring_alert_policy" "this" {
  for_each = local.alerts

  project               = var.project
  display_name          = each.value.display_name
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  severity              = "ERROR"

  conditions {
    display_name = each.value.display_name
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this[each.key].name}\" AND ${local.run_resource}"
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = each.value.aligner
        cross_series_reducer = each.value.reducer
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    content   = each.value.content
    mime_type = "text/markdown"
  }

  depends_on = [
    google_project_service.enabled["monitoring.googleapis.com"],
    time_sleep.log_metrics,
  ]
}
