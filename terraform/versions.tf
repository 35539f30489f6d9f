terraform {
  required_version = ">= 1.7"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4"
    }
  }

  # State stays local for `terraform apply` from a workstation. Cloud Build
  # writes a `backend_override.tf` with `backend "gcs" {}` and passes the state
  # bucket at init (see cloudbuild.yaml), so the pipeline shares one state.
}

provider "google" {
  project = var.project
  region  = var.region

  default_labels = {
    app = var.name_prefix
  }
}
