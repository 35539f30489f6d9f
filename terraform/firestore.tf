resource "google_firestore_database" "main" {
  project     = var.project
  name        = "(default)"
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"

  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # `terraform destroy` leaves the data behind; delete it by hand if meant.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.enabled["firestore.googleapis.com"]]
}

# Everything below follows functions/catalogue.py, which the store uses too;
# tests/terraform checks these maps against it (the emulator enforces no index,
# no exemption and no TTL, so nothing else would notice a mismatch).

locals {
  # catalogue.QUERIES: one composite index per query, fields in index order.
  composite_indexes = {
    # Renewer: channels in a state whose expiration falls within the window.
    channels_state_expiration = {
      collection = "channels"
      fields     = [{ path = "state", order = "ASCENDING" }, { path = "expiration", order = "ASCENDING" }]
    }
    # Renewer fan-out: one shard's channels in a state within the window.
    channels_state_shard_expiration = {
      collection = "channels"
      fields     = [{ path = "state", order = "ASCENDING" }, { path = "shard", order = "ASCENDING" }, { path = "expiration", order = "ASCENDING" }]
    }
    # Renewer safety net: active subscriptions not synced since a cutoff.
    subscriptions_status_last_synced_at = {
      collection = "subscriptions"
      fields     = [{ path = "status", order = "ASCENDING" }, { path = "last_synced_at", order = "ASCENDING" }]
    }
    # Renewer sweep: subscriptions whose sync request has been pending too long.
    subscriptions_status_requested_at = {
      collection = "subscriptions"
      fields     = [{ path = "status", order = "ASCENDING" }, { path = "requested_at", order = "ASCENDING" }]
    }
  }

  # catalogue.INDEX_EXEMPTIONS (exempt = true: no single-field index; payload
  # no query reads, which also avoids the index-entry limit and write
  # hot-spots on steadily increasing values) and catalogue.TTL_FIELDS
  # (ttl = true: documents are deleted once the field's time has passed,
  # within about a day). One entry per field: Firestore keeps one
  # configuration per field.
  field_configs = {
    "events/event"                     = { collection = "events", field = "event", exempt = true, ttl = false }
    "events/_synced_at"                = { collection = "events", field = "_synced_at", exempt = true, ttl = false }
    "events/_seq"                      = { collection = "events", field = "_seq", exempt = true, ttl = false }
    "changes/fields"                   = { collection = "changes", field = "fields", exempt = true, ttl = false }
    "changes/at"                       = { collection = "changes", field = "at", exempt = true, ttl = false }
    "changes/etag"                     = { collection = "changes", field = "etag", exempt = true, ttl = false }
    "changes/expire_at"                = { collection = "changes", field = "expire_at", exempt = true, ttl = true }
    "credentials/sealed_refresh_token" = { collection = "credentials", field = "sealed_refresh_token", exempt = true, ttl = false }
  }

  # catalogue.COLLECTION_GROUP_QUERIES: a single-field query across every
  # collection of that name (a collection group) needs a COLLECTION_GROUP
  # index on the field, which Firestore does not create by itself.
  collection_group_fields = {
    # Renewer outbox sweep: state/writer documents with entries left unpublished.
    "state/publish_pending_since" = { collection = "state", field = "publish_pending_since" }
  }
}

resource "google_firestore_index" "composite" {
  for_each = local.composite_indexes

  project     = var.project
  database    = google_firestore_database.main.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.path
      order      = fields.value.order
    }
  }
}

resource "google_firestore_field" "config" {
  for_each = local.field_configs

  project    = var.project
  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  # An empty index_config removes the automatic single-field indexes.
  dynamic "index_config" {
    for_each = each.value.exempt ? [1] : []
    content {}
  }

  dynamic "ttl_config" {
    for_each = each.value.ttl ? [1] : []
    content {}
  }
}

# Overriding a field's indexes replaces the automatic ones: the two
# collection-scope indexes are listed again beside the collection-group one.
resource "google_firestore_field" "collection_group" {
  for_each = local.collection_group_fields

  project    = var.project
  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "DESCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}

moved {
  from = google_firestore_index.channels_state_expiration
  to   = google_firestore_index.composite["channels_state_expiration"]
}

moved {
  from = google_firestore_index.subscriptions_status_last_synced_at
  to   = google_firestore_index.composite["subscriptions_status_last_synced_at"]
}

moved {
  from = google_firestore_index.subscriptions_status_requested_at
  to   = google_firestore_index.composite["subscriptions_status_requested_at"]
}
