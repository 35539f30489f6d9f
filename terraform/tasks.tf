locals {
  # The project's Calendar call budget is held by the sync queue's rate: what
  # renewals may take (a watch and a stop each) is set aside, the rest is spent in
  # tasks of calls_per_sync_task calls each, less one burst of the queue at its
  # largest (Cloud Tasks picks max_burst_size from the rate, at most 500 tasks: a
  # minute dispatches 60 s of the rate plus that bucket), capped at 500/s.
  # functions/config.py `sync_dispatches_per_second` is the same formula
  # (infra/tfcheck/budget_check.py holds them together).
  sync_dispatches_per_second = min(500, floor((var.project_calls_per_minute - 2 * var.renewals_per_minute - 500 * var.calls_per_sync_task) / (60 * var.calls_per_sync_task)))
}

resource "google_cloud_tasks_queue" "sync" {
  project  = var.project
  name     = "${var.name_prefix}-sync"
  location = var.region

  rate_limits {
    max_dispatches_per_second = local.sync_dispatches_per_second
    max_concurrent_dispatches = var.queue_max_concurrent_dispatches
  }

  # Bounded: a task that keeps failing ends after max_attempts or
  # max_retry_duration, whichever comes first; a request it leaves pending is
  # picked up again by the renewer's sweep.
  retry_config {
    max_attempts       = var.queue_max_attempts
    min_backoff        = "${var.queue_min_backoff_seconds}s"
    max_backoff        = "${var.queue_max_backoff_seconds}s"
    max_doublings      = var.queue_max_doublings
    max_retry_duration = "${var.queue_max_retry_duration_seconds}s"
  }

  stackdriver_logging_config {
    sampling_ratio = var.queue_log_sampling_ratio
  }

  # The dispatch deadline is a property of each task, not of the queue: the
  # functions set it from CALSYNC_DISPATCH_DEADLINE_SECONDS, and the worker's
  # timeout is the same variable (var.dispatch_deadline_seconds).

  depends_on = [google_project_service.enabled["cloudtasks.googleapis.com"]]
}

# The renewer's own tasks: one per shard and slot when a tick fans channel renewal
# out (var.renewal_shards > 1), and the continuations of ticks and shards. Apart
# from the sync queue so that neither one's backlog delays the other, and sized
# to the renewer: more tasks in flight than its instances can serve would only
# come back as 429s.
resource "google_cloud_tasks_queue" "renewer" {
  project  = var.project
  name     = "${var.name_prefix}-renewer"
  location = var.region

  rate_limits {
    # One shard run per task; every shard of a tick may start at once.
    max_dispatches_per_second = var.renewal_shards
    max_concurrent_dispatches = var.renewer_function.max_instances * var.renewer_function.concurrency
  }

  # Every task is named per shard and slot and the next tick queues the shard
  # again: a few attempts cover a cold start or a passing Firestore error.
  retry_config {
    max_attempts       = 3
    min_backoff        = "10s"
    max_backoff        = "60s"
    max_retry_duration = "600s"
  }

  stackdriver_logging_config {
    sampling_ratio = var.queue_log_sampling_ratio
  }

  depends_on = [google_project_service.enabled["cloudtasks.googleapis.com"]]
}
