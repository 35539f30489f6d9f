# Least privilege, one identity per job (tests/terraform checks this matrix):
#
#   webhook, worker, renewer  roles/datastore.user             project (Firestore has no finer grant)
#                             roles/cloudtasks.enqueuer        the sync queue only
#                             roles/iam.serviceAccountUser     the tasks-invoker account only (to mint task OIDC tokens)
#                             roles/secretmanager.secretAccessor  per secret, see secrets.tf
#   tasks-invoker             roles/run.invoker                worker and renewer services
#   scheduler                 roles/run.invoker                renewer service
#   allUsers                  roles/run.invoker                webhook service only (Google calls it)
#   worker, renewer           roles/iam.serviceAccountTokenCreator  the delegation account only (keyless
#                                                              domain-wide delegation: they sign its JWTs)
#   builder                   roles/logging.logWriter          project; artifactregistry.writer on the
#                                                              functions repository; objectViewer on the source bucket
#
# No function runs as (or builds with) the default compute service account,
# and nothing is granted actAs or token creation project-wide.

resource "google_service_account" "webhook" {
  project      = var.project
  account_id   = "${var.name_prefix}-webhook"
  display_name = "calsync webhook function"
}

resource "google_service_account" "worker" {
  project      = var.project
  account_id   = "${var.name_prefix}-worker"
  display_name = "calsync sync worker function"
}

resource "google_service_account" "renewer" {
  project      = var.project
  account_id   = "${var.name_prefix}-renewer"
  display_name = "calsync renewer function"
}

resource "google_service_account" "tasks_invoker" {
  project      = var.project
  account_id   = "${var.name_prefix}-tasks"
  display_name = "calsync Cloud Tasks OIDC identity (invokes worker and renewer)"
}

resource "google_service_account" "scheduler" {
  project      = var.project
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "calsync Cloud Scheduler OIDC identity (invokes the renewer)"
}

# Domain-wide delegation identity for Workspace calendars. It has no key and no
# role: the worker and renewer sign its JWTs through the IAM API. A Workspace
# admin authorizes its client id (output `delegation_client_id`) for the
# calendar scope.
resource "google_service_account" "delegation" {
  project      = var.project
  account_id   = "${var.name_prefix}-delegate"
  display_name = "calsync domain-wide delegation (Workspace calendars)"
}

resource "google_service_account" "builder" {
  project      = var.project
  account_id   = "${var.name_prefix}-builder"
  display_name = "calsync function builds (instead of the default compute account)"
}

# --- runtime accounts ----------------------------------------------------------

resource "google_project_iam_member" "datastore_user" {
  for_each = {
    webhook = google_service_account.webhook.member
    worker  = google_service_account.worker.member
    renewer = google_service_account.renewer.member
  }

  project = var.project
  role    = "roles/datastore.user"
  member  = each.value
}

# The webhook enqueues syncs, the worker follow-ups, the renewer fan-out and sweeps.
resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = {
    webhook = google_service_account.webhook.member
    worker  = google_service_account.worker.member
    renewer = google_service_account.renewer.member
  }

  project  = var.project
  location = google_cloud_tasks_queue.sync.location
  name     = google_cloud_tasks_queue.sync.name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value
}

# Creating a task whose OIDC token is minted for the tasks-invoker account
# needs actAs on that account, and on no other.
resource "google_service_account_iam_member" "tasks_invoker_user" {
  for_each = {
    webhook = google_service_account.webhook.member
    worker  = google_service_account.worker.member
    renewer = google_service_account.renewer.member
  }

  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

resource "google_service_account_iam_member" "delegation_token_creator" {
  for_each = {
    worker  = google_service_account.worker.member
    renewer = google_service_account.renewer.member
  }

  service_account_id = google_service_account.delegation.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}

# --- who may invoke which function (Cloud Run IAM on each function's service) --

resource "google_cloud_run_service_iam_member" "worker_tasks_invoker" {
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.worker.name
  role     = "roles/run.invoker"
  member   = google_service_account.tasks_invoker.member
}

resource "google_cloud_run_service_iam_member" "renewer_tasks_invoker" {
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.renewer.name
  role     = "roles/run.invoker"
  member   = google_service_account.tasks_invoker.member
}

resource "google_cloud_run_service_iam_member" "renewer_scheduler" {
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.renewer.name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

resource "google_cloud_run_service_iam_member" "webhook_public" {
  #checkov:skip=CKV_GCP_102:Google Calendar push notifications carry no Google identity, so the webhook must be invokable by allUsers; it acts only on a known channel id whose HMAC token verifies (constant-time) and whose resource id matches.
  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.webhook.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# --- the build account ---------------------------------------------------------

resource "google_project_iam_member" "builder" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = google_service_account.builder.member
}

resource "google_artifact_registry_repository_iam_member" "builder" {
  project    = var.project
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.builder.member
}

resource "google_storage_bucket_iam_member" "builder" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.builder.member
}
