# Three secrets; each function reads the ones listed in its `secrets` entry of
# local.functions and is granted secretAccessor on exactly those:
#   channel-token keys   webhook, renewer         (verify / sign channel tokens)
#   credential keys      worker, renewer, api     (seal / open stored refresh tokens)
#   OAuth client secret  worker, renewer, api     (refresh and exchange per-user tokens)
#
# No secret value passes through a variable, a plan or the state:
# - the key rings' first version (`k1:<random>`) is written once through the
#   write-only `secret_data_wo` from an ephemeral random_password;
# - the OAuth client secret's first version is a placeholder (a single space,
#   which functions/config.py reads as "not set"); the real value is added
#   with `gcloud secrets versions add` (README, "Deploy").
# Functions read the version pinned in var.secret_versions (default: the one
# created here), so a function never deploys before its secret has a version,
# and moving a pin in the committed tfvars rolls every function that reads it
# (the two-phase key rotation, README).

locals {
  secrets = {
    channel_token_keys  = { secret_id = "channel-token-keys", env = "CALSYNC_CHANNEL_TOKEN_KEYS", keyring = true }
    credential_keys     = { secret_id = "credential-keys", env = "CALSYNC_CREDENTIAL_KEYS", keyring = true }
    oauth_client_secret = { secret_id = "oauth-client-secret", env = "CALSYNC_OAUTH_CLIENT_SECRET", keyring = false }
  }

  # Secret accessor grants: "<secret>/<function>" for every secret a function reads.
  secret_readers = {
    "channel_token_keys/webhook"  = { secret = "channel_token_keys", account = "webhook" }
    "channel_token_keys/worker"   = { secret = "channel_token_keys", account = "worker" }
    "channel_token_keys/renewer"  = { secret = "channel_token_keys", account = "renewer" }
    "credential_keys/worker"      = { secret = "credential_keys", account = "worker" }
    "credential_keys/renewer"     = { secret = "credential_keys", account = "renewer" }
    "credential_keys/api"         = { secret = "credential_keys", account = "api" }
    "oauth_client_secret/worker"  = { secret = "oauth_client_secret", account = "worker" }
    "oauth_client_secret/renewer" = { secret = "oauth_client_secret", account = "renewer" }
    "oauth_client_secret/api"     = { secret = "oauth_client_secret", account = "api" }
  }

  # The version each function reads: the tfvars pin, else the first version.
  secret_version = {
    for key, secret in local.secrets :
    key => lookup(var.secret_versions, key, google_secret_manager_secret_version.initial[key].version)
  }
}

resource "google_secret_manager_secret" "this" {
  for_each = local.secrets

  project   = var.project
  secret_id = "${var.name_prefix}-${each.value.secret_id}"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled["secretmanager.googleapis.com"]]
}

# 32 random characters from [A-Za-z0-9] (about 190 bits), base64-encoded as
# functions/config.py expects; never stored anywhere by Terraform.
ephemeral "random_password" "key" {
  for_each = local.secrets

  length  = 32
  special = false
}

resource "google_secret_manager_secret_version" "initial" {
  for_each = local.secrets

  secret                 = google_secret_manager_secret.this[each.key].id
  secret_data_wo         = each.value.keyring ? "k1:${base64encode(ephemeral.random_password.key[each.key].result)}" : " "
  secret_data_wo_version = 1

  # Rotations add versions outside Terraform; this first one must survive a
  # `terraform destroy` of the functions (stored tokens may still be sealed
  # under k1), and disabling it once retired is not drift.
  deletion_policy = "ABANDON"

  lifecycle {
    ignore_changes = [enabled]
  }
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_readers

  project   = var.project
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.this[each.value.account].member
}
