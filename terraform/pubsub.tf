# Delivery to consumers (DESIGN.md, "Delivery (outbox)"): the worker publishes
# every committed change entry to the changes topic, ordered per subscription
# (ordering key = subscription id); the renewer reads the topic's name only to
# sweep the outbox, which enqueues publishing runs and publishes nothing
# itself (infra/tfcheck/publishers.py reads this from the code). Consumers receive them
#   - by push, when var.consumer_push_endpoint is set: an authenticated push
#     (an OIDC token minted for the pubsub_push account) to that address;
#   - by pull, when var.consumer_pull_members is set: those members may pull
#     from their own subscription, and from nothing else.
# A message a consumer keeps refusing goes to the dead-letter topic after
# var.pubsub_max_delivery_attempts; the dead-letter subscription keeps it
# (a topic without a subscription drops what is published to it).
#
# Dead-lettering and OIDC push run as Google's Pub/Sub service agent
# (service-<project number>@gcp-sa-pubsub.iam.gserviceaccount.com): it
# publishes to the dead-letter topic, subscribes to (acknowledges on) each
# consumer subscription, and mints the push account's tokens. It is the only
# publisher besides the worker (infra/tfcheck/pubsub_check.py).

locals {
  pubsub_topic_id = var.pubsub_topic_id != "" ? var.pubsub_topic_id : "${var.name_prefix}-changes"

  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # The functions whose code publishes: the worker's runs. (The renewer has
  # CALSYNC_PUBSUB_TOPIC too, but only enqueues publishing runs.)
  pubsub_publishers = {
    worker = "worker"
  }

  push_audience = var.consumer_push_audience != "" ? var.consumer_push_audience : var.consumer_push_endpoint

  # Named here so the alerts (monitoring.tf) can watch them whether they exist or not.
  push_subscription_id = "${local.pubsub_topic_id}-push"
  pull_subscription_id = "${local.pubsub_topic_id}-pull"
}

resource "google_pubsub_topic" "changes" {
  #checkov:skip=CKV_GCP_83:Messages are change entries the consumer API serves anyway (the feed is the source of truth, kept in Firestore under Google-managed encryption too); a customer-managed key would add a KMS key ring to run and pay for.
  project = var.project
  name    = local.pubsub_topic_id

  # Lets a consumer seek back (replay) after losing messages it acknowledged.
  message_retention_duration = "${var.pubsub_message_retention_seconds}s"

  depends_on = [google_project_service.enabled["pubsub.googleapis.com"]]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Holds only change entries a consumer failed to take, copies of what the consumer API serves; a customer-managed key would add a KMS key ring to run and pay for.
  project = var.project
  name    = "${local.pubsub_topic_id}-dead-letter"

  message_retention_duration = "${var.pubsub_message_retention_seconds}s"

  depends_on = [google_project_service.enabled["pubsub.googleapis.com"]]
}

# Without a subscription, whatever is dead-lettered is dropped. Read it with
# `gcloud pubsub subscriptions pull <output dead_letter_subscription> --auto-ack`.
resource "google_pubsub_subscription" "dead_letter" {
  project = var.project
  name    = "${local.pubsub_topic_id}-dead-letter"
  topic   = google_pubsub_topic.dead_letter.id

  # Seven days, the longest a subscription keeps unacknowledged messages.
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  # Never deleted for inactivity (the default is 31 days without a pull).
  expiration_policy {
    ttl = ""
  }
}

# --- the consumer's push subscription -------------------------------------------

resource "google_pubsub_subscription" "push" {
  count = var.consumer_push_endpoint != "" ? 1 : 0

  project = var.project
  name    = local.push_subscription_id
  topic   = google_pubsub_topic.changes.id

  # Only the messages that match (e.g. attributes:changed_start OR
  # attributes:changed_end): see var.consumer_filter.
  filter = var.consumer_filter != "" ? var.consumer_filter : null

  # Entries of one subscription arrive in seq order (ordering key = its id).
  enable_message_ordering    = true
  ack_deadline_seconds       = var.pubsub_ack_deadline_seconds
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = var.consumer_push_endpoint

    # Every push carries `Authorization: Bearer <ID token>` signed by Google
    # for the pubsub_push account, audience local.push_audience.
    oidc_token {
      service_account_email = google_service_account.this["pubsub_push"].email
      audience              = local.push_audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.pubsub_min_backoff_seconds}s"
    maximum_backoff = "${var.pubsub_max_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.pubsub_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_service_account_iam_member.pubsub_token_creator]
}

# --- the consumer's pull subscription -------------------------------------------

resource "google_pubsub_subscription" "pull" {
  count = length(var.consumer_pull_members) > 0 ? 1 : 0

  project = var.project
  name    = local.pull_subscription_id
  topic   = google_pubsub_topic.changes.id

  filter = var.consumer_filter != "" ? var.consumer_filter : null

  enable_message_ordering    = true
  ack_deadline_seconds       = var.pubsub_ack_deadline_seconds
  message_retention_duration = "604800s"

  retry_policy {
    minimum_backoff = "${var.pubsub_min_backoff_seconds}s"
    maximum_backoff = "${var.pubsub_max_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.pubsub_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# --- who may do what --------------------------------------------------------------

# Only the function that publishes the outbox, on the changes topic only.
resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.pubsub_publishers

  project = var.project
  topic   = google_pubsub_topic.changes.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.this[each.value].member
}

# A consumer pulls from its own subscription; never from the topic or project.
resource "google_pubsub_subscription_iam_member" "consumer" {
  for_each = toset(var.consumer_pull_members)

  project      = var.project
  subscription = google_pubsub_subscription.pull[0].name
  role         = "roles/pubsub.subscriber"
  member       = each.value

  depends_on = [google_project_service.enabled["iam.googleapis.com"]]
}

# The service agent forwards undeliverable messages to the dead-letter topic...
resource "google_pubsub_topic_iam_member" "dead_letter_agent" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent

  depends_on = [google_project_service.enabled["iam.googleapis.com"]]
}

# ...and acknowledges them on the subscription they came from.
resource "google_pubsub_subscription_iam_member" "push_agent" {
  count = var.consumer_push_endpoint != "" ? 1 : 0

  project      = var.project
  subscription = google_pubsub_subscription.push[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent

  depends_on = [google_project_service.enabled["iam.googleapis.com"]]
}

resource "google_pubsub_subscription_iam_member" "pull_agent" {
  count = length(var.consumer_pull_members) > 0 ? 1 : 0

  project      = var.project
  subscription = google_pubsub_subscription.pull[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent

  depends_on = [google_project_service.enabled["iam.googleapis.com"]]
}

# The service agent mints the push account's ID tokens (projects created
# before April 2021 do not grant this by themselves).
resource "google_service_account_iam_member" "pubsub_token_creator" {
  count = var.consumer_push_endpoint != "" ? 1 : 0

  service_account_id = google_service_account.this["pubsub_push"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
