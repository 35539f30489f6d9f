output "webhook_url" {
  description = "Public HTTPS address of the webhook: the channel address given to Google."
  value       = local.webhook_url
}

output "function_urls" {
  description = "URLs of the three functions (worker and renewer accept internal traffic only)."
  value       = local.function_urls
}

output "service_accounts" {
  description = "Email of each service account calsync runs as."
  value = {
    webhook       = google_service_account.webhook.email
    worker        = google_service_account.worker.email
    renewer       = google_service_account.renewer.email
    tasks_invoker = google_service_account.tasks_invoker.email
    scheduler     = google_service_account.scheduler.email
    builder       = google_service_account.builder.email
    delegation    = google_service_account.delegation.email
  }
}

output "delegation_client_id" {
  description = "Client id of the delegation account: authorize it for https://www.googleapis.com/auth/calendar.events.readonly under domain-wide delegation in the Workspace admin console."
  value       = google_service_account.delegation.unique_id
}

output "tasks_queue" {
  description = "Full resource name of the Cloud Tasks queue that carries sync tasks."
  value       = google_cloud_tasks_queue.sync.id
}

output "cli_environment" {
  description = "Settings for the operator CLI (`python -m functions.cli`) against this deployment; secrets are read from Secret Manager, not shown."
  value = {
    GOOGLE_CLOUD_PROJECT     = var.project
    CALSYNC_REGION           = var.region
    CALSYNC_TASKS_QUEUE      = google_cloud_tasks_queue.sync.name
    CALSYNC_WORKER_URL       = local.function_urls.worker
    CALSYNC_RENEWER_URL      = local.function_urls.renewer
    CALSYNC_WEBHOOK_URL      = local.webhook_url
    CALSYNC_TASKS_INVOKER_SA = google_service_account.tasks_invoker.email
    CALSYNC_DELEGATION_SA    = google_service_account.delegation.email
    CALSYNC_OAUTH_CLIENT_ID  = var.oauth_client_id
  }
}
