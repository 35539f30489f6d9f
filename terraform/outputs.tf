output "webhook_url" {
  description = "Public HTTPS address of the webhook: the channel address given to Google."
  value       = local.webhook_url
}

output "function_urls" {
  description = "URLs of the four functions (worker and renewer accept internal traffic only; the api needs an ID token of an api_invokers member)."
  value       = local.function_urls
}

output "service_accounts" {
  description = "Email of each service account calsync runs as, builds with or mints tokens for."
  value       = { for key, account in google_service_account.this : key => account.email }
}

output "delegation_client_id" {
  description = "Client id of the delegation account: authorize it for https://www.googleapis.com/auth/calendar.events.readonly under domain-wide delegation in the Workspace admin console."
  value       = google_service_account.this["delegation"].unique_id
}

output "tasks_queue" {
  description = "Full resource name of the Cloud Tasks queue that carries sync tasks."
  value       = google_cloud_tasks_queue.sync.id
}

output "secrets" {
  description = "Secret Manager secret ids (add versions with `gcloud secrets versions add`, then pin them in secret_versions)."
  value       = { for key, secret in google_secret_manager_secret.this : key => secret.secret_id }
}

output "cli_environment" {
  description = "Settings for the operator CLI (`python -m functions.cli`) against this deployment: every value the functions get from this configuration (CALSYNC_PUBSUB_TOPIC included, so what the CLI commits keeps the outbox as the functions do; checked by infra/tfcheck/consistency.py); secrets are read from Secret Manager, not shown."
  value = {
    GOOGLE_CLOUD_PROJECT       = var.project
    CALSYNC_REGION             = var.region
    CALSYNC_TASKS_QUEUE        = google_cloud_tasks_queue.sync.name
    CALSYNC_WORKER_URL         = local.function_urls.worker
    CALSYNC_RENEWER_URL        = local.function_urls.renewer
    CALSYNC_RENEWER_QUEUE      = google_cloud_tasks_queue.renewer.name
    CALSYNC_WEBHOOK_URL        = local.webhook_url
    CALSYNC_API_URL            = local.function_urls.api
    CALSYNC_TASKS_INVOKER_SA   = google_service_account.this["worker_invoker"].email
    CALSYNC_RENEWER_INVOKER_SA = google_service_account.this["renewer_invoker"].email
    CALSYNC_DELEGATION_SA      = google_service_account.this["delegation"].email
    CALSYNC_OAUTH_CLIENT_ID    = var.oauth_client_id
    CALSYNC_PUBSUB_TOPIC       = google_pubsub_topic.changes.name
  }
}

output "pubsub" {
  description = "Where changes are delivered: topic and subscription ids (null when not created), and the push account whose OIDC tokens a push consumer verifies."
  value = {
    topic                    = google_pubsub_topic.changes.id
    dead_letter_topic        = google_pubsub_topic.dead_letter.id
    dead_letter_subscription = google_pubsub_subscription.dead_letter.id
    push_subscription        = one(google_pubsub_subscription.push[*].id)
    pull_subscription        = one(google_pubsub_subscription.pull[*].id)
    push_service_account     = google_service_account.this["pubsub_push"].email
    push_audience            = var.consumer_push_endpoint != "" ? local.push_audience : null
  }
}

output "webhook_service" {
  description = "Cloud Run service behind the webhook function (name and region): where the invoker check is disabled when webhook_public_invoker is false (README, \"The webhook address\")."
  value = {
    name   = google_cloudfunctions2_function.this["webhook"].name
    region = var.region
  }
}
