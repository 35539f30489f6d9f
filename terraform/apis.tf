# Every API calsync's resources call. Each resource waits for the enablement of
# the API it needs, directly (depends_on) or through a reference
# (infra/tfcheck/apis.py holds the resource type -> API map and checks it).
#
# Two APIs must be on before the first plan, because Terraform itself calls
# them to read the project and to enable the rest (README, "First apply"):
#   gcloud services enable cloudresourcemanager.googleapis.com serviceusage.googleapis.com
locals {
  services = toset([
    "artifactregistry.googleapis.com",
    "calendar-json.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "enabled" {
  for_each = local.services

  project = var.project
  service = each.value

  # Other workloads in the project may use the same APIs.
  disable_on_destroy = false
}

data "google_project" "this" {
  project_id = var.project

  depends_on = [google_project_service.enabled["cloudresourcemanager.googleapis.com"]]
}
