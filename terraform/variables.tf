# --- where ---------------------------------------------------------------------

variable "project" {
  type        = string
  description = "Google Cloud project id that holds everything calsync deploys."
}

variable "region" {
  type        = string
  description = "Region of the functions, the task queue, the scheduler job and the source bucket."
  default     = "us-central1"
}

variable "firestore_location" {
  type        = string
  description = "Firestore location (a region such as us-central1, or a multi-region such as nam5). Empty means the same as `region`. Cannot change after creation."
  default     = ""
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (functions, queue, service accounts, secrets)."
  default     = "calsync"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,13}$", var.name_prefix))
    error_message = "name_prefix must be 2-14 lowercase letters, digits or hyphens, starting with a letter (service account ids are capped at 30 characters)."
  }
}

variable "webhook_public_url" {
  type        = string
  description = "HTTPS address Google pushes notifications to. Empty means the webhook function's own run.app URL; set it when a custom domain fronts the webhook."
  default     = ""

  validation {
    condition     = var.webhook_public_url == "" || startswith(var.webhook_public_url, "https://")
    error_message = "webhook_public_url must be an https:// address (Google refuses other channel addresses)."
  }
}

# --- channels, renewal and syncs (CALSYNC_* settings of functions/config.py) ----

variable "renewal_schedule" {
  type        = string
  description = "Cron schedule (UTC) of the renewer: channel renewal, safety-net syncs and the sweep of pending requests. Keep it a few minutes apart: the sweep re-enqueues requests pending longer than `sweep_after_seconds`."
  default     = "*/5 * * * *"
}

variable "renewal_shards" {
  type        = number
  description = "Channel renewal fans out to this many renewer tasks per tick, one per shard (CALSYNC_RENEWAL_SHARDS); 1: the tick renews every channel itself, which keeps up with about 10^5 calendars. Past that, 16 (with renewer_function.max_instances at least 16): README, \"Renewal at scale\". At most the renewer's instances times its concurrency, so that every shard of a tick runs at once."
  default     = 1

  validation {
    condition     = var.renewal_shards >= 1 && var.renewal_shards <= 32 && floor(var.renewal_shards) == var.renewal_shards
    error_message = "renewal_shards must be a whole number from 1 to 32 (the shard values a channel record holds)."
  }

  validation {
    condition     = var.renewal_shards <= var.renewer_function.max_instances * var.renewer_function.concurrency
    error_message = "renewal_shards must not exceed renewer_function.max_instances * renewer_function.concurrency: the shards of a tick would queue behind each other."
  }
}

variable "renewals_per_minute" {
  type        = number
  description = "Channel watches (renewals and retries) the renewer starts per minute at most (CALSYNC_RENEWALS_PER_MINUTE; with fan-out across shards, without it a seventh a run); each renewal costs two Calendar calls. The default renews 10^6 channels whose 7-day TTLs all end on one day inside a 1-day window (694 a minute needed)."
  default     = 1000

  validation {
    condition     = var.renewals_per_minute >= 1
    error_message = "renewals_per_minute must be positive."
  }
}

variable "renewal_slot_seconds" {
  type        = number
  description = "Each shard runs at most once per slot of this length (CALSYNC_RENEWAL_SLOT_SECONDS), starting its share of renewals_per_minute; a shard with more due continues at the next slot."
  default     = 60

  validation {
    condition     = var.renewal_slot_seconds >= 10
    error_message = "renewal_slot_seconds must be at least 10."
  }
}

variable "renewal_window_seconds" {
  type        = number
  description = "Channels expiring within this many seconds are replaced (CALSYNC_RENEWAL_WINDOW_SECONDS)."
  default     = 86400
}

variable "channel_ttl_seconds" {
  type        = number
  description = "Requested lifetime of a watch channel (CALSYNC_CHANNEL_TTL_SECONDS); Google caps it at about 7 days."
  default     = 604800

  validation {
    condition     = var.channel_ttl_seconds > 0 && var.channel_ttl_seconds <= 2678400
    error_message = "channel_ttl_seconds must be positive and at most 31 days."
  }
}

variable "pending_channel_grace_seconds" {
  type        = number
  description = "A channel still pending after this long (its watch never completed) is retried by the renewer (CALSYNC_PENDING_CHANNEL_GRACE_SECONDS)."
  default     = 120

  validation {
    condition     = var.pending_channel_grace_seconds > 0
    error_message = "pending_channel_grace_seconds must be positive."
  }
}

variable "renewal_backoff_seconds" {
  type        = number
  description = "First backoff after a failed watch; doubles per failure, at most an hour (CALSYNC_RENEWAL_BACKOFF_SECONDS)."
  default     = 60

  validation {
    condition     = var.renewal_backoff_seconds > 0
    error_message = "renewal_backoff_seconds must be positive."
  }
}

variable "channel_claim_seconds" {
  type        = number
  description = "How long a renewer run's claim on a channel lasts; longer than any one renewal (CALSYNC_CHANNEL_CLAIM_SECONDS)."
  default     = 300

  validation {
    condition     = var.channel_claim_seconds > 0
    error_message = "channel_claim_seconds must be positive."
  }
}

variable "channel_record_retention_seconds" {
  type        = number
  description = "Abandoned channel records are deleted this long after they expire (CALSYNC_CHANNEL_RECORD_RETENTION_SECONDS)."
  default     = 86400

  validation {
    condition     = var.channel_record_retention_seconds >= 0
    error_message = "channel_record_retention_seconds must not be negative."
  }
}

variable "give_up_attempts" {
  type        = number
  description = "Permanent-looking failures (a 4xx from events.list or a watch) tolerated before the subscription goes to error (CALSYNC_GIVE_UP_ATTEMPTS)."
  default     = 5

  validation {
    condition     = var.give_up_attempts >= 1
    error_message = "give_up_attempts must be at least 1."
  }
}

variable "commit_bytes" {
  type        = number
  description = "Byte budget of one Firestore commit of a sync run (CALSYNC_COMMIT_BYTES); Firestore refuses commits over 10 MiB."
  default     = 3145728

  validation {
    condition     = var.commit_bytes >= 65536 && var.commit_bytes <= 10485760
    error_message = "commit_bytes must be between 64 KiB and 10 MiB."
  }
}

variable "min_sync_interval_seconds" {
  type        = number
  description = "Follow-up sync runs start no sooner than this after the previous run started (CALSYNC_MIN_SYNC_INTERVAL_SECONDS)."
  default     = 2
}

variable "safety_net_interval_seconds" {
  type        = number
  description = "The safety net's shortest probe interval: a new subscription, one whose last probe found a missed change, or one whose channel is unhealthy is probed this often (CALSYNC_SAFETY_NET_INTERVAL_SECONDS)."
  default     = 21600
}

variable "safety_net_max_interval_seconds" {
  type        = number
  description = "The safety net's longest probe interval, reached by doubling after each probe that finds nothing notifications had not delivered: the published staleness bound (plus one renewer run) for a quiet calendar with every notification lost, and what sets a quiet calendar's Calendar calls per day (README, \"Scale and cost\") (CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS)."
  default     = 86400

  validation {
    condition     = var.safety_net_max_interval_seconds >= 1 && floor(var.safety_net_max_interval_seconds) == var.safety_net_max_interval_seconds
    error_message = "safety_net_max_interval_seconds must be a whole number of seconds, at least 1."
  }
}

variable "sweep_after_seconds" {
  type        = number
  description = "Sync requests pending longer than this with no task behind them are re-enqueued (CALSYNC_SWEEP_AFTER_SECONDS)."
  default     = 120
}

variable "lease_seconds" {
  type        = number
  description = "How long a sync run's lease lasts between extensions (CALSYNC_LEASE_SECONDS)."
  default     = 120
}

variable "run_budget_seconds" {
  type        = number
  description = "A sync run begins no new page after this long; it saves its page token and a follow-up task goes on from there (CALSYNC_RUN_BUDGET_SECONDS). Below dispatch_deadline_seconds by one page and the final commit (the worker refuses to start otherwise)."
  default     = 1500

  validation {
    condition     = var.run_budget_seconds > 0
    error_message = "run_budget_seconds must be positive."
  }
}

variable "notification_record_seconds" {
  type        = number
  description = "Last-notification fields are written at most this often per channel (CALSYNC_NOTIFICATION_RECORD_SECONDS)."
  default     = 5
}

variable "channel_cache_seconds" {
  type        = number
  description = "The webhook acts on a channel it read for this long before it reads it again (CALSYNC_CHANNEL_CACHE_SECONDS)."
  default     = 5
}

variable "page_size" {
  type        = number
  description = "maxResults for events.list (CALSYNC_PAGE_SIZE); Google caps it at 2500."
  default     = 2500

  validation {
    condition     = var.page_size >= 1 && var.page_size <= 2500
    error_message = "page_size must be between 1 and 2500."
  }
}

variable "oauth_client_id" {
  type        = string
  description = "OAuth client id for per-user refresh tokens (CALSYNC_OAUTH_CLIENT_ID). Empty when every calendar is reached through domain-wide delegation."
  default     = ""
}

variable "secret_versions" {
  type        = map(string)
  description = "Secret Manager version each function reads, per secret (channel_token_keys, credential_keys, oauth_client_secret), e.g. { oauth_client_secret = \"2\" }. Unset means the first version, created by Terraform. Moving a pin rolls every function that reads the secret (README: key rotation). Version numbers are not secret; the values never pass through Terraform."
  default     = {}

  validation {
    condition     = alltrue([for key, version in var.secret_versions : contains(["channel_token_keys", "credential_keys", "oauth_client_secret"], key) && can(regex("^[1-9][0-9]*$", version))])
    error_message = "secret_versions keys are channel_token_keys, credential_keys or oauth_client_secret; values are version numbers (never \"latest\": a pin is what rolls the functions)."
  }
}

variable "feed_retention_days" {
  type        = number
  description = "Change-feed entries expire this many days after they were written (CALSYNC_FEED_RETENTION_DAYS); a Firestore TTL policy deletes them."
  default     = 30

  validation {
    condition     = var.feed_retention_days >= 1
    error_message = "feed_retention_days must be at least 1."
  }
}

# --- delivery to consumers (Pub/Sub, pubsub.tf) ---------------------------------

variable "pubsub_topic_id" {
  type        = string
  description = "Id of the topic every committed change entry is published to (CALSYNC_PUBSUB_TOPIC). Empty means \"<name_prefix>-changes\"."
  default     = ""

  validation {
    condition     = var.pubsub_topic_id == "" || (can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,200}$", var.pubsub_topic_id)) && !startswith(var.pubsub_topic_id, "goog"))
    error_message = "pubsub_topic_id must be 3-201 letters, digits or -_.~+%, start with a letter and not with \"goog\" (the -dead-letter, -push and -pull names are derived from it)."
  }
}

variable "pubsub_message_retention_seconds" {
  type        = number
  description = "How long the changes and dead-letter topics keep every message, acknowledged or not, so a consumer can seek back and replay."
  default     = 604800

  validation {
    condition     = var.pubsub_message_retention_seconds >= 600 && var.pubsub_message_retention_seconds <= 2678400
    error_message = "pubsub_message_retention_seconds must be between 600 (10 minutes) and 2678400 (31 days)."
  }
}

variable "publish_max_messages" {
  type        = number
  description = "Messages one sync run may have submitted and unacknowledged at once; bounds the worker's memory while Pub/Sub is slow or down (CALSYNC_PUBLISH_MAX_MESSAGES)."
  default     = 1000

  validation {
    condition     = var.publish_max_messages >= 1
    error_message = "publish_max_messages must be at least 1."
  }
}

variable "publish_max_bytes" {
  type        = number
  description = "Bytes of messages one sync run may have submitted and unacknowledged at once (CALSYNC_PUBLISH_MAX_BYTES)."
  default     = 10485760

  validation {
    condition     = var.publish_max_bytes >= 1048576
    error_message = "publish_max_bytes must be at least 1 MiB (a message may be that large)."
  }
}

variable "publish_retry_seconds" {
  type        = number
  description = "First pause before a publish is retried after a transient failure; doubles, a few times per run (CALSYNC_PUBLISH_RETRY_SECONDS)."
  default     = 0.2

  validation {
    condition     = var.publish_retry_seconds > 0
    error_message = "publish_retry_seconds must be positive."
  }
}

variable "publish_timeout_seconds" {
  type        = number
  description = "A sync run waits at most this long in total for Pub/Sub to acknowledge its publishes; the rest is left to the next run or the renewer's sweep (CALSYNC_PUBLISH_TIMEOUT_SECONDS)."
  default     = 10

  validation {
    condition     = var.publish_timeout_seconds > 0
    error_message = "publish_timeout_seconds must be positive."
  }
}

variable "outbox_sweep_seconds" {
  type        = number
  description = "Entries left unpublished longer than this get a publishing run from the renewer (CALSYNC_OUTBOX_SWEEP_SECONDS)."
  default     = 60

  validation {
    condition     = var.outbox_sweep_seconds >= 1
    error_message = "outbox_sweep_seconds must be at least 1."
  }
}

variable "deletion_wait_seconds" {
  type        = number
  description = "An unsubscribe finishes once its subscription_deleted message is published; when the outbox has been stuck this long, the renewer deletes the subscription anyway (CALSYNC_DELETION_WAIT_SECONDS)."
  default     = 86400

  validation {
    condition     = var.deletion_wait_seconds >= 1
    error_message = "deletion_wait_seconds must be at least 1."
  }
}

variable "consumer_push_endpoint" {
  type        = string
  description = "HTTPS address Pub/Sub pushes every change to, with an OIDC token of the pubsub_push account (output pubsub.push_service_account). Empty: no push subscription."
  default     = ""

  validation {
    condition     = var.consumer_push_endpoint == "" || startswith(var.consumer_push_endpoint, "https://")
    error_message = "consumer_push_endpoint must be an https:// address (Pub/Sub sends OIDC tokens only over HTTPS)."
  }
}

variable "consumer_push_audience" {
  type        = string
  description = "Audience of the pushes' OIDC tokens, which the consumer must check. Empty means consumer_push_endpoint itself."
  default     = ""
}

variable "consumer_filter" {
  type        = string
  description = "Pub/Sub filter of the consumer's push and pull subscriptions, on the messages' attributes, e.g. attributes:changed_start OR attributes:changed_end (an updated message carries changed_<field> per changed field) or attributes.label_team = \"sales\". Empty: every message. A filtered consumer sees gaps in seq by design: it reads what it skipped from the changes route only if it needs it. Changing it replaces the subscriptions (Pub/Sub cannot change a filter)."
  default     = ""

  validation {
    condition     = length(var.consumer_filter) <= 256
    error_message = "consumer_filter must be at most 256 bytes (Pub/Sub's limit on a filter)."
  }
}

variable "consumer_pull_members" {
  type        = list(string)
  description = "IAM members of a consumer that pulls instead, e.g. [\"serviceAccount:app@my-app.iam.gserviceaccount.com\"]: non-empty creates the pull subscription and grants them roles/pubsub.subscriber on it alone."
  default     = []

  validation {
    condition     = alltrue([for member in var.consumer_pull_members : !contains(["allUsers", "allAuthenticatedUsers"], member) && can(regex("^(serviceAccount|user|group|domain|principal|principalSet):", member))])
    error_message = "consumer_pull_members must be IAM members such as serviceAccount:... or group:...; allUsers and allAuthenticatedUsers are refused."
  }
}

variable "pubsub_ack_deadline_seconds" {
  type        = number
  description = "How long a consumer has to acknowledge a message (answer a push with 2xx) before it is redelivered."
  default     = 60

  validation {
    condition     = var.pubsub_ack_deadline_seconds >= 10 && var.pubsub_ack_deadline_seconds <= 600
    error_message = "pubsub_ack_deadline_seconds must be between 10 and 600."
  }
}

variable "pubsub_min_backoff_seconds" {
  type        = number
  description = "Shortest wait before a message the consumer refused (or did not acknowledge) is redelivered."
  default     = 10

  validation {
    condition     = var.pubsub_min_backoff_seconds >= 0 && var.pubsub_min_backoff_seconds <= 600
    error_message = "pubsub_min_backoff_seconds must be between 0 and 600."
  }
}

variable "pubsub_max_backoff_seconds" {
  type        = number
  description = "Longest wait between redeliveries of a refused message (the backoff grows exponentially up to it)."
  default     = 600

  validation {
    condition     = var.pubsub_max_backoff_seconds >= 0 && var.pubsub_max_backoff_seconds <= 600
    error_message = "pubsub_max_backoff_seconds must be between 0 and 600."
  }
}

variable "pubsub_max_delivery_attempts" {
  type        = number
  description = "Deliveries of one message before it goes to the dead-letter topic. With ordering, later messages of the same subscription wait behind it until then."
  default     = 10

  validation {
    condition     = var.pubsub_max_delivery_attempts >= 5 && var.pubsub_max_delivery_attempts <= 100
    error_message = "pubsub_max_delivery_attempts must be between 5 and 100 (the Pub/Sub limits)."
  }
}

# --- who may call what ---------------------------------------------------------

variable "webhook_public_invoker" {
  type        = bool
  description = "Grant roles/run.invoker to allUsers on the webhook (Google's notifications carry no identity). Set false where the organisation policy iam.allowedPolicyMemberDomains refuses allUsers, and follow README \"Deploy\" (policy exception, or the Cloud Run invoker check disabled on the webhook's service)."
  default     = true
}

variable "api_invokers" {
  type        = list(string)
  description = "IAM members allowed to call the consumer API (roles/run.invoker on the api function), e.g. [\"serviceAccount:app@my-app.iam.gserviceaccount.com\"]. Never allUsers or allAuthenticatedUsers."
  default     = []

  validation {
    condition     = alltrue([for member in var.api_invokers : !contains(["allUsers", "allAuthenticatedUsers"], member) && can(regex("^(serviceAccount|user|group|domain|principal|principalSet):", member))])
    error_message = "api_invokers must be IAM members such as serviceAccount:... or group:...; allUsers and allAuthenticatedUsers are refused."
  }
}

variable "api_ingress" {
  type        = string
  description = "Ingress of the api function. ALLOW_ALL (default): consumers anywhere, every request still needs an ID token of an api_invokers member. ALLOW_INTERNAL_AND_GCLB: only through a load balancer or from the project's VPC. ALLOW_INTERNAL_ONLY: VPC only."
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_AND_GCLB", "ALLOW_INTERNAL_ONLY"], var.api_ingress)
    error_message = "api_ingress must be ALLOW_ALL, ALLOW_INTERNAL_AND_GCLB or ALLOW_INTERNAL_ONLY."
  }
}

# --- alerts --------------------------------------------------------------------

variable "alert_notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) every calsync alert notifies. Empty: alerts open incidents without notifying."
  default     = []
}

variable "alert_thresholds" {
  type = object({
    subscriptions_in_error_per_5m    = optional(number, 3)
    sync_transient_ratio             = optional(number, 0.25)
    sync_transient_sustained_seconds = optional(number, 900)
    renewal_failures_per_5m          = optional(number, 0)
    renewer_store_failures_per_15m   = optional(number, 1)
    renewer_silent_seconds           = optional(number, 1200)
    oldest_pending_age_seconds       = optional(number, 900)
    oldest_outbox_age_seconds        = optional(number, 900)
    webhook_5xx_per_5m               = optional(number, 10)
    webhook_throttled_per_5m         = optional(number, 0)
    webhook_forbidden_per_5m         = optional(number, 20)
    dead_letters_per_5m              = optional(number, 0)
    consumer_backlog_age_seconds     = optional(number, 1800)
    queue_depth                      = optional(number, 1000)
    queue_depth_sustained_seconds    = optional(number, 900)
  })
  description = "Alert thresholds (README, \"Logs and alerts\"): an alert opens when the value in its window is above the threshold (`_per_5m`, `_per_15m`: a count in that window; `_ratio`: a share of sync runs; `_seconds`: an age or, for `renewer_silent_seconds`, how long without a renewer run). `*_sustained_seconds`: how long the condition must hold."
  default     = {}

  validation {
    condition = alltrue([
      for seconds in [var.alert_thresholds.sync_transient_sustained_seconds, var.alert_thresholds.queue_depth_sustained_seconds, var.alert_thresholds.renewer_silent_seconds] :
      seconds >= 0 && seconds <= 86400 && floor(seconds / 60) * 60 == seconds
    ])
    error_message = "alert_thresholds durations (*_sustained_seconds, renewer_silent_seconds) must be whole minutes between 0 and 86400 seconds (Cloud Monitoring's condition durations)."
  }

  validation {
    # Cloud Scheduler runs the renewer every few minutes (renewal_schedule):
    # shorter silences would alert between two ticks.
    condition     = var.alert_thresholds.renewer_silent_seconds >= 600
    error_message = "alert_thresholds.renewer_silent_seconds must be at least 600 (two renewer ticks at the default schedule)."
  }

  validation {
    condition     = var.alert_thresholds.sync_transient_ratio > 0 && var.alert_thresholds.sync_transient_ratio <= 1
    error_message = "alert_thresholds.sync_transient_ratio is a share of sync runs, above 0 and at most 1."
  }
}

# --- the task queue ------------------------------------------------------------

variable "dispatch_deadline_seconds" {
  type        = number
  description = "How long Cloud Tasks waits for the worker (each task's dispatch deadline, CALSYNC_DISPATCH_DEADLINE_SECONDS) and the worker function's timeout: one value, so a run is never retried while it still runs. Covers a large full sync (100,000 events are 40 pages of 2,500)."
  default     = 1800

  validation {
    # Cloud Tasks accepts 15 s to 30 min for HTTP targets.
    condition     = var.dispatch_deadline_seconds >= 60 && var.dispatch_deadline_seconds <= 1800
    error_message = "dispatch_deadline_seconds must be between 60 and 1800 (the Cloud Tasks maximum for HTTP tasks)."
  }
}

variable "project_calls_per_minute" {
  type        = number
  description = "Calendar calls per minute the project makes at most (CALSYNC_PROJECT_CALLS_PER_MINUTE), below Google's 10,000: the sync queue dispatches what renewals (2 x renewals_per_minute) and one burst of the queue (at most 500 tasks) leave, in tasks of calls_per_sync_task calls (tasks.tf)."
  default     = 9000

  validation {
    condition     = var.project_calls_per_minute >= 1 && var.project_calls_per_minute <= 10000
    error_message = "project_calls_per_minute must be between 1 and Google's quota of 10000."
  }
}

variable "user_calls_per_minute" {
  type        = number
  description = "Calendar calls per minute made for one owner at most (CALSYNC_USER_CALLS_PER_MINUTE); a burst adds a tenth, so at most 545 under Google's 600 per user."
  default     = 480

  validation {
    condition     = var.user_calls_per_minute >= 1 && var.user_calls_per_minute <= 545
    error_message = "user_calls_per_minute must be between 1 and 545 (a burst adds a tenth; Google's quota is 600 per user)."
  }
}

variable "calls_per_sync_task" {
  type        = number
  description = "Calendar calls one sync task makes at most (CALSYNC_CALLS_PER_SYNC_TASK); a pass that needs more continues in a follow-up task."
  default     = 1
}

variable "user_budget_shards" {
  type        = number
  description = "Documents one owner's call budget is spread over (CALSYNC_USER_BUDGET_SHARDS): each is written at most user_calls_per_minute / 60 / shards times a second."
  default     = 16
}

variable "queue_max_concurrent_dispatches" {
  type        = number
  description = "Cloud Tasks rate limit: sync tasks in flight at once. Keep it at or below the worker's max instances times its per-instance concurrency."
  default     = 50
}

variable "queue_max_attempts" {
  type        = number
  description = "Attempts per task, the first included; bounded so a malformed task (400) or a persistent failure ends."
  default     = 10

  validation {
    condition     = var.queue_max_attempts >= 1 && var.queue_max_attempts <= 100
    error_message = "queue_max_attempts must be between 1 and 100 (unbounded retries are not allowed)."
  }
}

variable "queue_min_backoff_seconds" {
  type        = number
  description = "Shortest wait before a failed task is retried."
  default     = 5
}

variable "queue_max_backoff_seconds" {
  type        = number
  description = "Longest wait between retries of a failed task."
  default     = 600
}

variable "queue_max_doublings" {
  type        = number
  description = "How many times the retry interval doubles before growing linearly."
  default     = 5
}

variable "queue_max_retry_duration_seconds" {
  type        = number
  description = "A failing task is abandoned this long after its first attempt (the renewer's sweep picks its request up again)."
  default     = 7200
}

variable "queue_log_sampling_ratio" {
  type        = number
  description = "Fraction of task dispatches logged by Cloud Tasks (0 to 1)."
  default     = 0.1

  validation {
    condition     = var.queue_log_sampling_ratio >= 0 && var.queue_log_sampling_ratio <= 1
    error_message = "queue_log_sampling_ratio must be between 0 and 1."
  }
}

# --- the functions -------------------------------------------------------------

variable "python_runtime" {
  type        = string
  description = "Cloud Functions runtime of the four functions (CI tests on the same Python, see cloudbuild.yaml)."
  default     = "python311"
}

variable "webhook_function" {
  type = object({
    memory          = optional(string, "256Mi")
    cpu             = optional(string, "1")
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 100)
    concurrency     = optional(number, 80)
    timeout_seconds = optional(number, 30)
  })
  description = "Webhook sizing. It only validates and enqueues, answering in milliseconds, so one instance serves many notifications at once (`concurrency`, which also sets its THREADS) and a short timeout suffices. Keep max_instances well above the peak: at max instances Cloud Run answers 429, which Google never retries (alert \"webhook refused by Cloud Run (429)\"); idle instances cost nothing with min_instances = 0."
  default     = {}
}

variable "worker_function" {
  type = object({
    memory        = optional(string, "1Gi")
    cpu           = optional(string, "1")
    min_instances = optional(number, 0)
    max_instances = optional(number, 50)
    concurrency   = optional(number, 1)
  })
  description = "Sync worker sizing. One sync per instance (pages of up to 2500 events are held in memory). Its timeout is dispatch_deadline_seconds."
  default     = {}
}

variable "renewer_function" {
  type = object({
    memory          = optional(string, "512Mi")
    cpu             = optional(string, "1")
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 5)
    concurrency     = optional(number, 1)
    timeout_seconds = optional(number, 600)
  })
  description = "Renewer sizing. Runs every few minutes from Cloud Scheduler and fans channel renewal out to renewal_shards tasks at once through its own queue: max_instances times concurrency must hold them."
  default     = {}

  validation {
    # Cloud Scheduler's attempt deadline for HTTP targets is at most 30 minutes.
    condition     = var.renewer_function.timeout_seconds >= 60 && var.renewer_function.timeout_seconds <= 1800
    error_message = "renewer_function.timeout_seconds must be between 60 and 1800 (the Cloud Scheduler attempt deadline maximum)."
  }
}

variable "api_function" {
  type = object({
    memory          = optional(string, "512Mi")
    cpu             = optional(string, "1")
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 5)
    concurrency     = optional(number, 40)
    timeout_seconds = optional(number, 60)
  })
  description = "Consumer API sizing. Pages of up to 1,000 entries or snapshots; an OAuth code exchange is one outbound call. `concurrency` also sets its THREADS."
  default     = {}
}
