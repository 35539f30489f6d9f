terraform {
  # 1.11: write-only attributes (`secret_data_wo`) and ephemeral resources, so
  # the generated key rings never reach the state or a plan file.
  required_version = ">= 1.11"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Pinned to the minor series the offline checks validate against
      # (infra/tfcheck/schema_check.py reads the 6.50.0 schema): a newer minor
      # may rename or add attributes the checks have never seen, and 7.x
      # changes defaults. Move this pin and schema_cache.PROVIDER_VERSION
      # together.
      version = "~> 6.50.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3"
    }
    random = {
      source = "hashicorp/random"
      # 3.7: `ephemeral "random_password"`.
      version = ">= 3.7, < 4"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.12, < 1"
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
