# Three secrets, each readable only by the functions whose settings
# (functions/config.py, `used_by`) include it:
#   channel-token keys      webhook, renewer   (verify / sign channel tokens)
#   credential keys         worker, renewer    (decrypt stored refresh tokens)
#   OAuth client secret     worker, renewer    (refresh per-user tokens)
#
# Terraform writes the first version of each key ring (`k1:<32 random bytes>`),
# so the state holds it: keep the state bucket private. Rotate by adding a
# version `k2:<new>,k1:<old>` with gcloud; the functions read "latest".

resource "google_secret_manager_secret" "channel_token_keys" {
  project   = var.project
  secret_id = "${var.name_prefix}-channel-token-keys"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret" "credential_keys" {
  project   = var.project
  secret_id = "${var.name_prefix}-credential-keys"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret" "oauth_client_secret" {
  project   = var.project
  secret_id = "${var.name_prefix}-oauth-client-secret"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "random_bytes" "channel_token_key" {
  length = 32
}

resource "random_bytes" "credential_key" {
  length = 32
}

resource "google_secret_manager_secret_version" "channel_token_keys" {
  secret      = google_secret_manager_secret.channel_token_keys.id
  secret_data = "k1:${random_bytes.channel_token_key.base64}"

  # Later versions (rotations) are added outside Terraform.
  lifecycle {
    ignore_changes = [secret_data]
  }
}

resource "google_secret_manager_secret_version" "credential_keys" {
  secret      = google_secret_manager_secret.credential_keys.id
  secret_data = "k1:${random_bytes.credential_key.base64}"

  lifecycle {
    ignore_changes = [secret_data]
  }
}

# A secret version cannot be empty: without per-user OAuth the value is a
# single space, which functions/config.py reads as "not set".
resource "google_secret_manager_secret_version" "oauth_client_secret" {
  secret      = google_secret_manager_secret.oauth_client_secret.id
  secret_data = var.oauth_client_secret != "" ? var.oauth_client_secret : " "
}

resource "google_secret_manager_secret_iam_member" "channel_token_keys_webhook" {
  project   = var.project
  secret_id = google_secret_manager_secret.channel_token_keys.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.webhook.member
}

resource "google_secret_manager_secret_iam_member" "channel_token_keys_renewer" {
  project   = var.project
  secret_id = google_secret_manager_secret.channel_token_keys.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.renewer.member
}

resource "google_secret_manager_secret_iam_member" "credential_keys_worker" {
  project   = var.project
  secret_id = google_secret_manager_secret.credential_keys.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.worker.member
}

resource "google_secret_manager_secret_iam_member" "credential_keys_renewer" {
  project   = var.project
  secret_id = google_secret_manager_secret.credential_keys.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.renewer.member
}

resource "google_secret_manager_secret_iam_member" "oauth_client_secret_worker" {
  project   = var.project
  secret_id = google_secret_manager_secret.oauth_client_secret.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.worker.member
}

resource "google_secret_manager_secret_iam_member" "oauth_client_secret_renewer" {
  project   = var.project
  secret_id = google_secret_manager_secret.oauth_client_secret.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.renewer.member
}
