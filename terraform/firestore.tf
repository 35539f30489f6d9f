resource "google_firestore_database" "main" {
  project     = var.project
  name        = "(default)"
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"

  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # `terraform destroy` leaves the data behind; delete it by hand if meant.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.enabled]
}

# One composite index per store query that filters on one field and ranges or
# orders on another (infra/tfcheck/queries.py lists them; a test maps each
# query to its index because the emulator does not enforce indexes).

# Renewer: channels in a state whose expiration falls within the renewal window.
resource "google_firestore_index" "channels_state_expiration" {
  project     = var.project
  database    = google_firestore_database.main.name
  collection  = "channels"
  query_scope = "COLLECTION"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "expiration"
    order      = "ASCENDING"
  }
}

# Renewer safety net: active subscriptions not synced since a cutoff.
resource "google_firestore_index" "subscriptions_status_last_synced_at" {
  project     = var.project
  database    = google_firestore_database.main.name
  collection  = "subscriptions"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "last_synced_at"
    order      = "ASCENDING"
  }
}

# Renewer sweep: subscriptions whose sync request has been pending too long.
resource "google_firestore_index" "subscriptions_status_requested_at" {
  project     = var.project
  database    = google_firestore_database.main.name
  collection  = "subscriptions"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "requested_at"
    order      = "ASCENDING"
  }
}
