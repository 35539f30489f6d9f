# Log-based metrics over the functions' JSON log lines (functions/logs.py) and
# Cloud Run's request logs, and alert policies on them and on Google's own
# metrics (Cloud Run requests, Pub/Sub subscriptions, the task queue). Gen2
# functions log as their Cloud Run service: resource.type "cloud_run_revision",
# service name = function name. Every alert notifies
# var.alert_notification_channels (README, "Logs and alerts": what each one
# means and what to do). infra/tfcheck/monitoring_check.py reads the code's
# log calls and checks every filter against the lines they write.
#
# Severity: ERROR means calsync itself is failing or losing notifications;
# WARNING means degraded, or caused by users or the consumer.

locals {
  run_resource = "resource.type=\"cloud_run_revision\""

  service_filter = {
    for key, name in local.function_names : key => "${local.run_resource} AND resource.labels.service_name=\"${name}\""
  }
  all_services = "${local.run_resource} AND resource.labels.service_name=(\"${local.function_names.webhook}\" OR \"${local.function_names.worker}\" OR \"${local.function_names.renewer}\" OR \"${local.function_names.api}\")"

  log_metrics = {
    # Every sync run, whatever its outcome: the denominator of the transient ratio.
    sync_runs = {
      description = "Sync runs, any outcome."
      filter      = "${local.service_filter.worker} AND jsonPayload.message=\"sync run\""
      unit        = "1"
      value_field = ""
    }
    # Transient failures are retried by Cloud Tasks; the alert is on their share.
    sync_transient = {
      description = "Sync runs that failed transiently (the task is retried)."
      filter      = "${local.service_filter.worker} AND jsonPayload.message=\"sync run\" AND jsonPayload.outcome=\"transient\""
      unit        = "1"
      value_field = ""
    }
    # A permanent failure puts the subscription in `error`: the user's doing.
    subscriptions_in_error = {
      description = "Sync runs that ended with the subscription in error (outcome failed)."
      filter      = "${local.service_filter.worker} AND jsonPayload.message=\"sync run\" AND jsonPayload.outcome=\"failed\""
      unit        = "1"
      value_field = ""
    }
    # Our deployment is wrong: a setting, a key, a grant. Never the user's.
    misconfigured = {
      description = "Lines saying a function is misconfigured (settings, keys, delegation grants)."
      filter      = "${local.all_services} AND (jsonPayload.message=(\"webhook misconfigured\" OR \"sync worker misconfigured\" OR \"renewer misconfigured\" OR \"api misconfigured\" OR \"list task rejected\") OR (jsonPayload.message=(\"sync run\" OR \"list run\") AND jsonPayload.outcome=\"misconfigured\"))"
      unit        = "1"
      value_field = ""
    }
    # A bug: an exception no handler expected.
    crashes = {
      description = "Unexpected exceptions: crashed sync and calendar-list runs, unhandled exceptions, api internal errors."
      filter      = "${local.all_services} AND jsonPayload.message=(\"sync run crashed\" OR \"list run crashed\" OR \"unhandled exception\" OR \"api internal error\")"
      unit        = "1"
      value_field = ""
    }
    # The renewer could not read or write Firestore or the queue; retried by the scheduler.
    renewer_store_failures = {
      description = "Renewer runs that failed on Firestore or the queue."
      filter      = "${local.service_filter.renewer} AND jsonPayload.message=\"renewer store failure\""
      unit        = "1"
      value_field = ""
    }
    # Only renewals that keep failing: the third failed attempt in a row is an ERROR line.
    channel_renewal_failures = {
      description = "Channel renewals that failed three times in a row (the channel may expire without a replacement)."
      filter      = "${local.service_filter.renewer} AND jsonPayload.message=\"channel renewal failed\" AND severity>=ERROR"
      unit        = "1"
      value_field = ""
    }
    # Every renewer run writes this line; its absence means the renewer stopped.
    renewer_runs = {
      description = "Renewer runs that completed."
      filter      = "${local.service_filter.renewer} AND jsonPayload.message=\"renewer run\""
      unit        = "1"
      value_field = ""
    }
    # Each renewer run reports how long the oldest pending sync request waits.
    oldest_pending_age = {
      description = "Age in seconds of the oldest pending sync request, as each renewer run saw it."
      filter      = "${local.service_filter.renewer} AND jsonPayload.message=\"renewer run\" AND jsonPayload.oldest_pending_age_s>=0"
      unit        = "s"
      value_field = "jsonPayload.oldest_pending_age_s"
    }
    # ...and how long the oldest unpublished change entry waits (publish_pending_since).
    oldest_outbox_age = {
      description = "Age in seconds of the oldest change entry not yet published to Pub/Sub, as each renewer run saw it."
      filter      = "${local.service_filter.renewer} AND jsonPayload.message=\"renewer run\" AND jsonPayload.oldest_outbox_age_s>=0"
      unit        = "s"
      value_field = "jsonPayload.oldest_outbox_age_s"
    }
    # Cloud Run's request log of the webhook service.
    webhook_5xx = {
      description = "Webhook requests answered with a 5xx status (Google redelivers, then gives up)."
      filter      = "${local.service_filter.webhook} AND log_id(\"run.googleapis.com/requests\") AND httpRequest.status>=500"
      unit        = "1"
      value_field = ""
    }
  }

  # The consumer subscriptions (pubsub.tf), by name whether they exist or not:
  # a filter on a subscription that does not exist matches nothing.
  consumer_subscriptions = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=one_of(\"${local.push_subscription_id}\", \"${local.pull_subscription_id}\")"
  webhook_requests       = "metric.type=\"run.googleapis.com/request_count\" AND ${local.run_resource} AND resource.labels.service_name=\"${local.function_names.webhook}\""
  thresholds             = var.alert_thresholds

  # Threshold alerts: the value in each `window` (seconds) above `threshold`
  # for `duration` seconds; with a `denominator`, the ratio of the two.
  alerts = {
    misconfigured = {
      display_name = "calsync: misconfigured"
      severity     = "ERROR"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["misconfigured"].name}\" AND ${local.run_resource}"
      denominator  = ""
      threshold    = 0
      window       = 300
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "A function says it is misconfigured (a missing or malformed setting, a key ring that cannot open a stored credential, delegation not authorized): its requests fail with 500 and are retried, users' subscriptions are untouched. The log line names the setting; fix it in calsync.auto.tfvars or Secret Manager and apply."
    }
    crashes = {
      display_name = "calsync: unexpected exceptions"
      severity     = "ERROR"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["crashes"].name}\" AND ${local.run_resource}"
      denominator  = ""
      threshold    = 0
      window       = 300
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "An exception no handler expected (\"sync run crashed\", \"list run crashed\", \"unhandled exception\", \"api internal error\"): a bug. The line carries the exception; the request was answered 500 and is retried."
    }
    sync_transient = {
      display_name = "calsync: sync runs failing transiently"
      severity     = "WARNING"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["sync_transient"].name}\" AND ${local.run_resource}"
      denominator  = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["sync_runs"].name}\" AND ${local.run_resource}"
      threshold    = local.thresholds.sync_transient_ratio
      window       = 300
      duration     = local.thresholds.sync_transient_sustained_seconds
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "A large share of sync runs fail transiently (Calendar 5xx, Firestore or the queue unavailable) for a sustained time; Cloud Tasks retries each with backoff. The \"sync run\" lines with outcome transient carry the error. If it lasts, check Google's status dashboard and the queue's retry settings."
    }
    subscriptions_in_error = {
      display_name = "calsync: subscriptions going to error"
      severity     = "WARNING"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["subscriptions_in_error"].name}\" AND ${local.run_resource}"
      denominator  = ""
      threshold    = local.thresholds.subscriptions_in_error_per_5m
      window       = 300
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "Several subscriptions went to error in a few minutes (revoked grants, calendars gone or shared no more, events Firestore refuses): users' doing one by one, a pattern if many. `python -m functions.cli status --json` shows last_error; the consumer re-authorizes or resumes them."
    }
    channel_renewal_failures = {
      display_name = "calsync: channel renewals failing"
      severity     = "ERROR"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["channel_renewal_failures"].name}\" AND ${local.run_resource}"
      denominator  = ""
      threshold    = local.thresholds.renewal_failures_per_5m
      window       = 300
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "A channel failed to renew three times in a row (\"channel renewal failed\" at ERROR; earlier attempts are retried with backoff). A channel that expires without a successor delivers nothing; the safety net still syncs. The line names the subscription and Google's error."
    }
    renewer_store_failures = {
      display_name = "calsync: renewer failing on Firestore or the queue"
      severity     = "ERROR"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["renewer_store_failures"].name}\" AND ${local.run_resource}"
      denominator  = ""
      threshold    = local.thresholds.renewer_store_failures_per_15m
      window       = 900
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "Renewer runs keep failing on Firestore or Cloud Tasks (\"renewer store failure\"): no renewal, sweep or safety net while it lasts. Check Firestore and the queue (paused? quota?) and the renewer's IAM."
    }
    oldest_pending_age = {
      display_name = "calsync: sync requests waiting too long"
      severity     = "ERROR"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["oldest_pending_age"].name}\" AND ${local.run_resource}"
      denominator  = ""
      threshold    = local.thresholds.oldest_pending_age_seconds
      window       = 300
      duration     = 0
      aligner      = "ALIGN_PERCENTILE_99"
      reducer      = "REDUCE_MAX"
      content      = "The oldest pending sync request is older than the threshold (renewer run, oldest_pending_age_s): tasks are not being served (queue paused, worker failing, dispatch limits). `gcloud tasks queues describe` shows the queue's state."
    }
    oldest_outbox_age = {
      display_name = "calsync: changes not reaching Pub/Sub"
      severity     = "ERROR"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["oldest_outbox_age"].name}\" AND ${local.run_resource}"
      denominator  = ""
      threshold    = local.thresholds.oldest_outbox_age_seconds
      window       = 300
      duration     = 0
      aligner      = "ALIGN_PERCENTILE_99"
      reducer      = "REDUCE_MAX"
      content      = "The oldest change entry not yet published is older than the threshold (renewer run, oldest_outbox_age_s): Pub/Sub refuses or times out (\"publish deferred\" lines), or the worker may not publish to the topic. Consumers still read the changes route; nothing is lost."
    }
    webhook_5xx = {
      display_name = "calsync: webhook answering 5xx"
      severity     = "ERROR"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["webhook_5xx"].name}\" AND ${local.run_resource}"
      denominator  = ""
      threshold    = local.thresholds.webhook_5xx_per_5m
      window       = 300
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "The webhook answered 5xx (usually a failed enqueue or Firestore unavailable); Google redelivers for a while, then the change waits for the safety net."
    }
    webhook_throttled = {
      display_name = "calsync: webhook refused by Cloud Run (429)"
      severity     = "ERROR"
      filter       = "${local.webhook_requests} AND metric.labels.response_code=\"429\""
      denominator  = ""
      threshold    = local.thresholds.webhook_throttled_per_5m
      window       = 300
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "Cloud Run answered 429 for the webhook: every instance was busy at max_instances. Google does not retry a 429, so those notifications are lost until the safety net syncs. Raise webhook_function.max_instances."
    }
    webhook_forbidden = {
      display_name = "calsync: webhook answering 403"
      severity     = "ERROR"
      filter       = "${local.webhook_requests} AND metric.labels.response_code=\"403\""
      denominator  = ""
      threshold    = local.thresholds.webhook_forbidden_per_5m
      window       = 300
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "Many 403 answers from the webhook's service: Cloud Run's invoker check (the allUsers grant is missing: README, \"The webhook address\") or channel tokens that no longer verify (a key rotation done in one step). Google does not retry a 403. A burst of forged requests also shows here: the webhook's \"notification\" lines with result rejected_token tell which."
    }
    dead_letters = {
      display_name = "calsync: changes dead-lettered"
      severity     = "WARNING"
      filter       = "metric.type=\"pubsub.googleapis.com/subscription/dead_letter_message_count\" AND ${local.consumer_subscriptions}"
      denominator  = ""
      threshold    = local.thresholds.dead_letters_per_5m
      window       = 300
      duration     = 0
      aligner      = "ALIGN_SUM"
      reducer      = "REDUCE_SUM"
      content      = "The consumer refused a change pubsub_max_delivery_attempts times and Pub/Sub moved it to the dead-letter topic. Read it from the dead-letter subscription (`terraform output pubsub`), fix the consumer, and refill from the changes route."
    }
    consumer_backlog_age = {
      display_name = "calsync: consumer falling behind"
      severity     = "WARNING"
      filter       = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.consumer_subscriptions}"
      denominator  = ""
      threshold    = local.thresholds.consumer_backlog_age_seconds
      window       = 300
      duration     = 0
      aligner      = "ALIGN_MAX"
      reducer      = "REDUCE_MAX"
      content      = "The oldest change the consumer has not acknowledged (push or pull subscription) is older than the threshold: its endpoint refuses or times out, or a pull consumer stopped. With ordering, later changes of that subscription wait behind it."
    }
    queue_depth = {
      display_name = "calsync: sync queue backing up"
      severity     = "WARNING"
      filter       = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" AND resource.type=\"cloud_tasks_queue\" AND resource.labels.queue_id=\"${google_cloud_tasks_queue.sync.name}\""
      denominator  = ""
      threshold    = local.thresholds.queue_depth
      window       = 300
      duration     = local.thresholds.queue_depth_sustained_seconds
      aligner      = "ALIGN_MAX"
      reducer      = "REDUCE_SUM"
      content      = "More sync tasks wait in the queue than the threshold, for a sustained time (safety-net bursts pass within minutes): the worker is slower than the arrivals, or the queue's rate limits or the worker's max instances are too low."
    }
  }

  # Absence alerts: no matching line for `duration` seconds.
  absence_alerts = {
    renewer_runs = {
      display_name = "calsync: renewer stopped"
      filter       = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.this["renewer_runs"].name}\" AND ${local.run_resource}"
      duration     = local.thresholds.renewer_silent_seconds
      content      = "No \"renewer run\" line for the configured time: the Cloud Scheduler job is paused or failing (its logs say why), or the renewer fails before it reports (\"renewer misconfigured\", \"renewer store failure\"). Without it channels lapse, stranded requests and unpublished changes wait, and safety-net syncs stop. `gcloud scheduler jobs describe` shows the job; `python -m functions.cli renew` runs one pass by hand."
    }
  }
}

resource "google_logging_metric" "this" {
  for_each = local.log_metrics

  project     = var.project
  name        = "${var.name_prefix}/${replace(each.key, "_", "-")}"
  description = each.value.description
  filter      = each.value.filter

  # Counters count matching lines; the age metrics are distributions of the
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
  severity              = each.value.severity

  conditions {
    display_name = each.value.display_name
    condition_threshold {
      filter             = each.value.filter
      denominator_filter = each.value.denominator == "" ? null : each.value.denominator
      comparison         = "COMPARISON_GT"
      threshold_value    = each.value.threshold
      duration           = "${each.value.duration}s"
      # One series per policy: summed over revisions, so a deploy (a new
      # revision, an old one going quiet) neither splits nor ends it.
      aggregations {
        alignment_period     = "${each.value.window}s"
        per_series_aligner   = each.value.aligner
        cross_series_reducer = each.value.reducer
      }
      dynamic "denominator_aggregations" {
        for_each = each.value.denominator == "" ? [] : [1]
        content {
          alignment_period     = "${each.value.window}s"
          per_series_aligner   = each.value.aligner
          cross_series_reducer = each.value.reducer
        }
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

resource "google_monitoring_alert_policy" "absent" {
  for_each = local.absence_alerts

  project               = var.project
  display_name          = each.value.display_name
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  severity              = "ERROR"

  conditions {
    display_name = each.value.display_name
    condition_absent {
      filter   = each.value.filter
      duration = "${each.value.duration}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
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
