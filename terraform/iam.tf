# Least privilege, one identity per job, each grant one entry of a map below
# (tests/terraform reads these maps and checks them against its matrix):
#
#   webhook, worker, renewer, api  roles/datastore.user           project (Firestore has no finer grant)
#                                  roles/cloudtasks.enqueuer      the sync queue only
#                                  roles/iam.serviceAccountUser   worker-invoker only (mint the tasks' OIDC tokens)
#   renewer                        roles/iam.serviceAccountUser   renewer-invoker too (its own continuations)
#                                  roles/cloudtasks.enqueuer      the renewer queue too (fan-out, continuations)
#   worker-invoker                 roles/run.invoker              the worker service only (Cloud Tasks)
#   renewer-invoker                roles/run.invoker              the renewer service only (Scheduler, continuations)
#   allUsers                       roles/run.invoker              webhook service, when var.webhook_public_invoker
#   var.api_invokers               roles/run.invoker              api service only (never allUsers)
#   worker, renewer                roles/iam.serviceAccountTokenCreator  the delegation account only (keyless
#                                                                 domain-wide delegation: they sign its JWTs)
#   builder                        roles/logging.logWriter        project; artifactregistry.writer on the functions
#                                                                 repository; objectViewer on the source bucket and,
#                                                                 conditioned, on Google's gcf-v2-sources-* buckets
#   every function account         roles/secretmanager.secretAccessor  per secret it reads (secrets.tf)
#   worker                         roles/pubsub.publisher         the changes topic only (pubsub.tf; the
#                                                                 renewer's outbox sweep only enqueues)
#   var.consumer_pull_members      roles/pubsub.subscriber        the pull subscription only
#   Pub/Sub service agent          roles/pubsub.publisher         the dead-letter topic; subscriber on the
#                                                                 consumer subscriptions; token creator on
#                                                                 pubsub-push (OIDC push)
#
# One invoker account per target: the webhook and the api may act as the
# worker-invoker, which can call nothing but the worker, so neither can reach
# the renewer. No function runs as (or builds with) the default compute
# account, and nothing is granted actAs or token creation project-wide.

locals {
  service_accounts = {
    webhook         = { account_id = "webhook", display_name = "calsync webhook function" }
    worker          = { account_id = "worker", display_name = "calsync sync worker function" }
    renewer         = { account_id = "renewer", display_name = "calsync renewer function" }
    api             = { account_id = "api", display_name = "calsync consumer API function" }
    worker_invoker  = { account_id = "worker-invoker", display_name = "calsync Cloud Tasks OIDC identity (invokes the worker only)" }
    renewer_invoker = { account_id = "renewer-invoker", display_name = "calsync Scheduler and continuation OIDC identity (invokes the renewer only)" }
    # Domain-wide delegation identity for Workspace calendars. No key and no
    # role: the worker and renewer sign its JWTs through the IAM API. A
    # Workspace admin authorizes its client id (output `delegation_client_id`).
    delegation = { account_id = "delegate", display_name = "calsync domain-wide delegation (Workspace calendars)" }
    builder    = { account_id = "builder", display_name = "calsync function builds (instead of the default compute account)" }
    # The identity in the OIDC token of every push to var.consumer_push_endpoint
    # (pubsub.tf). No role: the consumer checks the token's email and audience.
    pubsub_push = { account_id = "pubsub-push", display_name = "calsync Pub/Sub push identity (OIDC tokens to the consumer)" }
  }

  # Project-level Firestore access: Firestore has no finer IAM scope.
  firestore_users = {
    webhook = "webhook"
    worker  = "worker"
    renewer = "renewer"
    api     = "api"
  }

  # Who may create tasks on the sync queue: the webhook (syncs), the worker
  # (follow-ups), the renewer (sweeps, safety net, continuations), the api
  # (subscribe, resume, resync).
  enqueuers = {
    webhook = "webhook"
    worker  = "worker"
    renewer = "renewer"
    api     = "api"
  }

  # Who may create tasks on the renewer queue: the renewer alone (its shard
  # fan-out and its continuations).
  renewer_enqueuers = {
    renewer = "renewer"
  }

  # actAs: creating a task whose OIDC token is minted for an invoker account
  # needs roles/iam.serviceAccountUser on that account, and on no other.
  act_as = {
    "webhook/worker_invoker"  = { account = "webhook", target = "worker_invoker" }
    "worker/worker_invoker"   = { account = "worker", target = "worker_invoker" }
    "renewer/worker_invoker"  = { account = "renewer", target = "worker_invoker" }
    "api/worker_invoker"      = { account = "api", target = "worker_invoker" }
    "renewer/renewer_invoker" = { account = "renewer", target = "renewer_invoker" }
  }

  token_creators = {
    "worker/delegation"  = { account = "worker", target = "delegation" }
    "renewer/delegation" = { account = "renewer", target = "delegation" }
  }

  # Cloud Run invoker grants on the functions' services: one account per target.
  run_invokers = {
    "worker/worker_invoker"   = { function = "worker", account = "worker_invoker" }
    "renewer/renewer_invoker" = { function = "renewer", account = "renewer_invoker" }
  }
}

resource "google_service_account" "this" {
  for_each = local.service_accounts

  project      = var.project
  account_id   = "${var.name_prefix}-${each.value.account_id}"
  display_name = each.value.display_name

  depends_on = [google_project_service.enabled["iam.googleapis.com"]]
}

# --- runtime accounts ----------------------------------------------------------

resource "google_project_iam_member" "datastore_user" {
  for_each = local.firestore_users

  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.this[each.value].member

  depends_on = [google_project_service.enabled["cloudresourcemanager.googleapis.com"]]
}

resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = local.enqueuers

  project  = var.project
  location = google_cloud_tasks_queue.sync.location
  name     = google_cloud_tasks_queue.sync.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.this[each.value].member
}

resource "google_cloud_tasks_queue_iam_member" "renewer_enqueuer" {
  for_each = local.renewer_enqueuers

  project  = var.project
  location = google_cloud_tasks_queue.renewer.location
  name     = google_cloud_tasks_queue.renewer.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.this[each.value].member
}

resource "google_service_account_iam_member" "act_as" {
  for_each = local.act_as

  service_account_id = google_service_account.this[each.value.target].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.this[each.value.account].member
}

resource "google_service_account_iam_member" "token_creator" {
  for_each = local.token_creators

  service_account_id = google_service_account.this[each.value.target].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.this[each.value.account].member
}

# --- who may invoke which function (Cloud Run IAM on each function's service) --

resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = local.run_invokers

  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.this[each.value.function].name
  role     = "roles/run.invoker"
  member   = google_service_account.this[each.value.account].member
}

# The consumer applications' accounts (var.api_invokers; never allUsers).
resource "google_cloud_run_service_iam_member" "api_invoker" {
  for_each = toset(var.api_invokers)

  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.this["api"].name
  role     = "roles/run.invoker"
  member   = each.value
}

# Google's push notifications carry no Google identity, so the webhook must be
# invokable by allUsers. Where the organisation restricts member domains
# (iam.allowedPolicyMemberDomains, the default for organisations created since
# 2024) this grant is refused: set webhook_public_invoker = false and follow
# README "Deploy" (organisation-policy exception, or the Cloud Run invoker
# check disabled on the webhook's service after each deploy).
resource "google_cloud_run_service_iam_member" "webhook_public" {
  #checkov:skip=CKV_GCP_102:Google Calendar push notifications carry no Google identity, so the webhook must be invokable by allUsers; it acts only on a known channel id whose HMAC token verifies (constant-time) and whose resource id matches.
  count = var.webhook_public_invoker ? 1 : 0

  project  = var.project
  location = var.region
  service  = google_cloudfunctions2_function.this["webhook"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# --- the build account ---------------------------------------------------------
#
# What the provider's own builder example grants (logWriter, Artifact Registry
# writer, object access), narrowed: write on our repository only, read on our
# source bucket, and read on Google's gcf-v2-sources-<number>-<region> bucket,
# into which Cloud Functions copies the source before the build fetches it.
# That bucket exists only after the first deploy, so the grant is project-level
# with a condition on the bucket name rather than on the bucket.

resource "google_project_iam_member" "builder_log_writer" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = google_service_account.this["builder"].member

  depends_on = [google_project_service.enabled["cloudresourcemanager.googleapis.com"]]
}

resource "google_project_iam_member" "builder_gcf_sources" {
  project = var.project
  role    = "roles/storage.objectViewer"
  member  = google_service_account.this["builder"].member

  condition {
    title       = "gcf-v2-sources buckets only"
    description = "Cloud Functions copies each function's source into gcf-v2-sources-<project number>-<region>; the build reads it there."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
  }

  depends_on = [google_project_service.enabled["cloudresourcemanager.googleapis.com"]]
}

resource "google_artifact_registry_repository_iam_member" "builder" {
  project    = var.project
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.this["builder"].member
}

resource "google_storage_bucket_iam_member" "builder" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.this["builder"].member
}

# IAM is eventually consistent: a build started right after these grants can
# still be refused ("Access to bucket gcf-v2-sources-... denied"), and a
# revision can be refused its secrets. The functions wait for this. A sleep
# is created once; its triggers name every grant it covers, so a grant added
# or changed by a later apply replaces it and the functions wait again.
resource "time_sleep" "iam_propagation" {
  create_duration = "60s"

  triggers = {
    grants = sha256(jsonencode([
      google_project_iam_member.builder_log_writer.id,
      google_project_iam_member.builder_gcf_sources.id,
      google_artifact_registry_repository_iam_member.builder.id,
      google_storage_bucket_iam_member.builder.id,
      [for grant in google_secret_manager_secret_iam_member.accessor : grant.id],
      [for grant in google_project_iam_member.datastore_user : grant.id],
      [for grant in google_service_account_iam_member.act_as : grant.id],
      [for grant in google_service_account_iam_member.token_creator : grant.id],
      [for grant in google_pubsub_topic_iam_member.publisher : grant.id],
    ]))
  }

  depends_on = [
    google_project_iam_member.builder_log_writer,
    google_project_iam_member.builder_gcf_sources,
    google_artifact_registry_repository_iam_member.builder,
    google_storage_bucket_iam_member.builder,
    google_secret_manager_secret_iam_member.accessor,
    google_project_iam_member.datastore_user,
    google_service_account_iam_member.act_as,
    google_service_account_iam_member.token_creator,
    google_pubsub_topic_iam_member.publisher,
  ]
}

moved {
  from = google_service_account.webhook
  to   = google_service_account.this["webhook"]
}

moved {
  from = google_service_account.worker
  to   = google_service_account.this["worker"]
}

moved {
  from = google_service_account.renewer
  to   = google_service_account.this["renewer"]
}

moved {
  from = google_service_account.delegation
  to   = google_service_account.this["delegation"]
}

moved {
  from = google_service_account.builder
  to   = google_service_account.this["builder"]
}
