"""Every setting of calsync, read from environment variables in one place.

`VARIABLES` is the single table of what the functions read: `Settings.from_env`
parses it, the README's configuration table is written from it, and the
Terraform consistency tests check that each function is deployed with exactly
the variables it reads.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from functions.model import SHARD_SPACE

WEBHOOK = "webhook"
WORKER = "sync_worker"
RENEWER = "renew_channels"
API = "api"
CLI = "cli"
ALL_FUNCTIONS = (WEBHOOK, WORKER, RENEWER, API)
# Firestore refuses a commit request over 10 MiB (the emulator over 4 MiB).
MAX_COMMIT_BYTES = 10 * 1024 * 1024


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _parse_str(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _parse_url(value: str) -> str:
    value = value.strip()
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise ValueError("must be an http(s) URL")
    return value


def _parse_host_port(value: str) -> str:
    value = value.strip()
    if not re.match(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$", value):
        raise ValueError("must be host:port")
    return value


def _parse_positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError as err:
        raise ValueError("must be a number") from err
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError("must be a positive number")
    return number


def _parse_dispatch_deadline(value: str) -> int:
    seconds = _parse_positive_int(value)
    if not 15 <= seconds <= 1800:
        raise ValueError("must be between 15 and 1800 (Cloud Tasks' limits)")
    return seconds


# Google's Calendar API quotas (calendar-api.md): the budgets stay below them.
GOOGLE_PROJECT_QUOTA = 10000  # requests per minute per project
GOOGLE_USER_QUOTA = 600  # requests per minute per user per project
QUEUE_RATE_LIMIT = 500  # Cloud Tasks' highest max_dispatches_per_second
# Cloud Tasks picks a queue's `max_burst_size` itself from its rate (output only),
# at most 500: tasks it may dispatch at once on top of the rate.
QUEUE_BURST_LIMIT = 500


def sync_dispatches_per_second(project_calls_per_minute: int, renewals_per_minute: int,
                               calls_per_task: int) -> int:
    """Sync tasks per second that keep the project within its call budget in every
    minute: what renewals (a watch and a stop each) leave, less one burst of the queue
    at its largest (a minute dispatches 60 s of the rate plus the bucket Cloud Tasks
    holds, up to QUEUE_BURST_LIMIT tasks), in tasks of `calls_per_task` calls, whole,
    capped at Cloud Tasks' limit (terraform/tasks.tf writes the same formula)."""
    spare = project_calls_per_minute - 2 * renewals_per_minute
    return min(QUEUE_RATE_LIMIT,
               (spare - QUEUE_BURST_LIMIT * calls_per_task) // (60 * calls_per_task))


def _parse_positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError as err:
        raise ValueError("must be a whole number") from err
    if number <= 0:
        raise ValueError("must be a positive whole number")
    return number


def _parse_shards(value: str) -> int:
    number = _parse_positive_int(value)
    if number > SHARD_SPACE:
        raise ValueError(f"must be between 1 and {SHARD_SPACE} (the shard values a channel "
                         "record can hold)")
    return number


def _parse_commit_bytes(value: str) -> int:
    number = _parse_positive_int(value)
    if not 64 * 1024 <= number <= MAX_COMMIT_BYTES:
        raise ValueError(f"must be between 65536 and {MAX_COMMIT_BYTES} (Firestore's "
                         "request limit)")
    return number


def _parse_topic_id(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}", value) or value.startswith("goog"):
        raise ValueError("must be a Pub/Sub topic id (3-255 characters: letters, digits, "
                         "-_.~+%, starting with a letter, not with 'goog')")
    return value


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _parse_keyring(value: str) -> dict[str, bytes]:
    """`id:base64key[,id:base64key...]`; the first entry is the current key."""
    keys: dict[str, bytes] = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        key_id, sep, encoded = part.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", key_id):
            raise ValueError("must be id:base64key entries separated by commas")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"key {key_id!r} is not valid base64") from err
        if len(secret) < 16:
            raise ValueError(f"key {key_id!r} must be at least 16 bytes")
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} appears twice")
        keys[key_id] = secret
    if not keys:
        raise ValueError("must hold at least one id:base64key entry")
    return keys


@dataclass(frozen=True)
class Variable:
    """One environment variable: how to parse it and who reads it."""

    name: str
    attr: str
    parse: Callable[[str], Any]
    description: str
    used_by: tuple[str, ...]
    default: str | None = None
    required: bool = True
    secret: bool = False
    local_only: bool = False  # set only against emulators, never in production


VARIABLES: tuple[Variable, ...] = (
    Variable("GOOGLE_CLOUD_PROJECT", "project", _parse_str,
             "Project that holds Firestore and the task queue.", ALL_FUNCTIONS),
    Variable("CALSYNC_REGION", "region", _parse_str,
             "Region of the task queue.", ALL_FUNCTIONS),
    Variable("CALSYNC_TASKS_QUEUE", "tasks_queue", _parse_str,
             "Cloud Tasks queue id that carries sync tasks.", ALL_FUNCTIONS),
    Variable("CALSYNC_WORKER_URL", "worker_url", _parse_url,
             "URL of the sync worker function (target of sync tasks).", ALL_FUNCTIONS),
    Variable("CALSYNC_TASKS_INVOKER_SA", "tasks_invoker_sa", _parse_str,
             "Service account the tasks' OIDC tokens are minted for.", ALL_FUNCTIONS,
             default="", required=False),
    Variable("CALSYNC_WEBHOOK_URL", "webhook_url", _parse_url,
             "Public HTTPS address of the webhook function (channel address).",
             (WORKER, RENEWER)),
    Variable("CALSYNC_RENEWER_URL", "renewer_url", _parse_url,
             "URL of the renewer function (target of fan-out tasks).", (RENEWER,),
             default="", required=False),
    Variable("CALSYNC_RENEWER_INVOKER_SA", "renewer_invoker_sa", _parse_str,
             "Service account the renewer's own continuation tasks are minted for (one "
             "invoker account per target).", (RENEWER,), default="", required=False),
    Variable("CALSYNC_RENEWER_QUEUE", "renewer_queue", _parse_str,
             "Cloud Tasks queue id of the renewer's own tasks (shard fan-out, "
             "continuations). Unset: CALSYNC_TASKS_QUEUE.", (RENEWER,), default="",
             required=False),
    Variable("CALSYNC_RENEWAL_SHARDS", "renewal_shards", _parse_shards,
             "Channel renewal fans out to this many tasks per renewer tick, one per shard "
             f"(1 to {SHARD_SPACE}; channels are spread over {SHARD_SPACE} shard values by "
             "id); 1: the tick renews channels itself. Above 1 needs CALSYNC_RENEWER_URL.",
             (RENEWER,), default="1"),
    Variable("CALSYNC_RENEWALS_PER_MINUTE", "renewals_per_minute", _parse_positive_int,
             "Channel watches (renewals and retries) started per minute at most, across "
             "shards (without fan-out: a seventh of it per renewer run); each renewal "
             "costs two Calendar calls (watch, stop).",
             (RENEWER,), default="1000"),
    Variable("CALSYNC_PROJECT_CALLS_PER_MINUTE", "project_calls_per_minute",
             _parse_positive_int,
             "Calendar calls per minute the project makes at most (Google's quota: "
             f"{GOOGLE_PROJECT_QUOTA:,}/min per project): the sync queue's dispatch rate is "
             "what is left after renewals (two calls each, CALSYNC_RENEWALS_PER_MINUTE) and "
             "one burst of the queue (500 tasks at most), divided by "
             "CALSYNC_CALLS_PER_SYNC_TASK; terraform sets the queue from it.",
             (RENEWER,), default="9000"),
    Variable("CALSYNC_USER_CALLS_PER_MINUTE", "user_calls_per_minute", _parse_positive_int,
             "Calendar calls per minute made for one owner at most, whatever their number "
             f"of calendars (Google's quota: {GOOGLE_USER_QUOTA}/min per user; a burst adds at "
             "most a tenth: keep it at most 545): a sync run takes its calls from the "
             "owner's token bucket and, when it is empty, continues in a task named for the "
             "time it refills; a renewal (two calls) is left to a later renewer run.",
             (WORKER, RENEWER), default="480"),
    Variable("CALSYNC_CALLS_PER_SYNC_TASK", "calls_per_task", _parse_positive_int,
             "Calendar calls one sync task makes at most (a watch and list pages); a pass "
             "that needs more goes on from its saved page token in a follow-up task.",
             (WORKER, RENEWER), default="1"),
    Variable("CALSYNC_USER_BUDGET_SHARDS", "user_budget_shards", _parse_positive_int,
             "Documents one owner's call budget is spread over (each holds a share of the "
             "bucket), so none takes more than CALSYNC_USER_CALLS_PER_MINUTE / 60 / shards "
             "writes per second.", (WORKER, RENEWER), default="16"),
    Variable("CALSYNC_RENEWAL_SLOT_SECONDS", "renewal_slot", _parse_positive_int,
             "With fan-out: each shard runs at most once per slot of this length, starting "
             "at most its share of the renewals allowed per slot; a shard with more due "
             "continues at the next slot.", (RENEWER,), default="60"),
    Variable("CALSYNC_DISPATCH_DEADLINE_SECONDS", "dispatch_deadline", _parse_dispatch_deadline,
             "Dispatch deadline of every task; the worker's timeout is the same value.",
             ALL_FUNCTIONS, default="1800"),
    Variable("CALSYNC_CHANNEL_TOKEN_KEYS", "channel_token_keys", _parse_keyring,
             "Channel-token HMAC keys, `id:base64key,...`, current first.",
             (WEBHOOK, WORKER, RENEWER), secret=True),
    Variable("CALSYNC_CREDENTIAL_KEYS", "credential_keys", _parse_keyring,
             "AES-GCM keys for stored refresh tokens, `id:base64key,...`, current first.",
             (WORKER, RENEWER, API), secret=True, required=False, default=""),
    Variable("CALSYNC_OAUTH_CLIENT_ID", "oauth_client_id", _parse_str,
             "OAuth client id for per-user refresh tokens.", (WORKER, RENEWER, API),
             required=False, default=""),
    Variable("CALSYNC_OAUTH_CLIENT_SECRET", "oauth_client_secret", _parse_str,
             "OAuth client secret for per-user refresh tokens.", (WORKER, RENEWER, API),
             secret=True, required=False, default=""),
    Variable("CALSYNC_DELEGATION_SA", "delegation_sa", _parse_str,
             "Service account with domain-wide delegation (Workspace calendars).",
             (WORKER, RENEWER), required=False, default=""),
    Variable("CALSYNC_DELEGATION_KEY_FILE", "delegation_key_file", _parse_str,
             "JSON key of the delegation service account; production signs keylessly "
             "through the IAM API instead.", (WORKER, RENEWER),
             required=False, default="", local_only=True),
    Variable("CALSYNC_CHANNEL_TTL_SECONDS", "channel_ttl", _parse_positive_int,
             "Requested lifetime of a watch channel.", (WORKER, RENEWER), default="604800"),
    Variable("CALSYNC_PENDING_CHANNEL_GRACE_SECONDS", "pending_channel_grace",
             _parse_positive_int,
             "A channel still pending after this long (its watch never completed) is "
             "retried by the renewer.", (WORKER, RENEWER), default="120"),
    Variable("CALSYNC_RENEWAL_BACKOFF_SECONDS", "renewal_backoff", _parse_positive_int,
             "First backoff after a failed watch; doubles per failure, at most an hour.",
             (WORKER, RENEWER), default="60"),
    Variable("CALSYNC_RENEWAL_WINDOW_SECONDS", "renewal_window", _parse_positive_int,
             "Channels expiring within this window are replaced; must be shorter than "
             "the channel TTL.", (RENEWER,), default="86400"),
    Variable("CALSYNC_CHANNEL_CLAIM_SECONDS", "channel_claim", _parse_positive_int,
             "A renewer run claims a due channel for this long; longer than any one "
             "renewal (token minting and the watch), so two runs never renew one channel.",
             (RENEWER,), default="300"),
    Variable("CALSYNC_CHANNEL_RECORD_RETENTION_SECONDS", "channel_record_retention",
             _parse_positive_int,
             "Abandoned channel records (every failed watch leaves one) are deleted this "
             "long after they expired; kept meanwhile for diagnosis.", (RENEWER,),
             default="86400"),
    Variable("CALSYNC_GIVE_UP_ATTEMPTS", "give_up_attempts", _parse_positive_int,
             "A Calendar answer that refuses the request itself (a 4xx from events.list or "
             "events.watch; a calendar gone when watching) puts the subscription in `error` "
             "after this many attempts in a row.", (WORKER, RENEWER), default="5"),
    Variable("CALSYNC_TASK_MAX_BACKOFF_SECONDS", "task_max_backoff", _parse_positive_int,
             "The queue's longest wait between two attempts of a task (its max_backoff): "
             "the sweep gives a pending request a new task only after its runs have been "
             "silent this long. Unset: the sweep age (the emulator retries at once).",
             (RENEWER,), default="", required=False),
    Variable("CALSYNC_MIN_SYNC_INTERVAL_SECONDS", "min_sync_interval", _parse_positive_float,
             "Follow-up runs start no sooner than this after the previous run started.",
             ALL_FUNCTIONS, default="2"),
    Variable("CALSYNC_SAFETY_NET_INTERVAL_SECONDS", "safety_net_interval",
             _parse_positive_int,
             "The safety net's shortest probe interval: a subscription not synced within "
             "its interval gets a safety-net sync; the interval starts here, doubles after "
             "each probe that finds nothing notifications had not delivered, and comes "
             "back here after a probe that finds a missed change or while the channel is "
             "unhealthy.", (RENEWER,), default="21600"),
    Variable("CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS", "safety_net_max_interval",
             _parse_positive_int,
             "The safety net's longest probe interval: the published staleness bound (plus "
             "one renewer run) for a quiet calendar whose every notification is lost "
             "(README, \"Scale and cost\"). Unset, or shorter than "
             "CALSYNC_SAFETY_NET_INTERVAL_SECONDS: that interval, fixed (terraform deploys "
             "86400).", (RENEWER,), default="", required=False),
    Variable("CALSYNC_SWEEP_AFTER_SECONDS", "sweep_after", _parse_positive_int,
             "Requests pending longer than this with no task are re-enqueued.",
             (RENEWER,), default="120"),
    Variable("CALSYNC_LEASE_SECONDS", "lease_seconds", _parse_positive_int,
             "How long a sync run's lease lasts between extensions.", (WORKER,),
             default="120"),
    Variable("CALSYNC_NOTIFICATION_RECORD_SECONDS", "notification_record_interval",
             _parse_positive_float,
             "Last-notification fields are written at most this often per channel.",
             (WEBHOOK,), default="5"),
    Variable("CALSYNC_CHANNEL_CACHE_SECONDS", "channel_cache_seconds", _parse_positive_float,
             "The webhook acts on a channel it read (delivering, its resource id known) "
             "for this long before it reads it again: a push on a channel stopped within "
             "it records a request that a paused or deleted subscription ignores.",
             (WEBHOOK,), default="5"),
    Variable("CALSYNC_RUN_BUDGET_SECONDS", "run_budget", _parse_positive_float,
             "A sync run begins no new page after this long: it saves its page token with "
             "the pages committed so far and a follow-up task goes on from there. Keep it "
             "below the dispatch deadline by one page and the final commit. Unset: five "
             "sixths of CALSYNC_DISPATCH_DEADLINE_SECONDS.", (WORKER,), default="",
             required=False),
    Variable("CALSYNC_PAGE_SIZE", "page_size", _parse_positive_int,
             "maxResults for events.list (Google caps it at 2500).", (WORKER,),
             default="2500"),
    Variable("CALSYNC_COMMIT_BYTES", "commit_bytes", _parse_commit_bytes,
             "Byte budget of one Firestore commit; a page is split to fit (production "
             "refuses over 10 MiB, the emulator over 4 MiB).", (WORKER,), default="3145728"),
    Variable("CALSYNC_FEED_RETENTION_DAYS", "feed_retention_days", _parse_positive_int,
             "Change entries expire (Firestore TTL on `expire_at`) this many days after "
             "they were written.", (WORKER, API), default="30"),
    Variable("CALSYNC_PUBSUB_TOPIC", "pubsub_topic", _parse_topic_id,
             "Pub/Sub topic id every committed change is published to (the outbox); "
             "unset: no publishing.", (WORKER, RENEWER), default="", required=False),
    Variable("CALSYNC_PUBLISH_TIMEOUT_SECONDS", "publish_timeout", _parse_positive_float,
             "A run spends at most this long publishing (reading, submitting, waiting for "
             "Pub/Sub to acknowledge; each publish request's deadline too), and the sync "
             "waits for it at most what is left; the rest goes to a continuation task, the "
             "next run or the renewer's sweep.", (WORKER,), default="10"),
    Variable("CALSYNC_PUBLISH_MAX_MESSAGES", "publish_max_messages", _parse_positive_int,
             "Messages a run keeps submitted to Pub/Sub and not yet acknowledged (its "
             "window; the process holds at most two windows, earlier runs' included).",
             (WORKER,), default="1000"),
    Variable("CALSYNC_PUBLISH_MAX_BYTES", "publish_max_bytes", _parse_positive_int,
             "Bytes of messages a run keeps submitted and not yet acknowledged (one "
             "larger message still goes alone).", (WORKER,), default="10485760"),
    Variable("CALSYNC_PUBLISH_RETRY_SECONDS", "publish_retry", _parse_positive_float,
             "Pause after a transient publish failure before publishing again; doubles per "
             "failure (at most 5 per run, within its publish timeout).", (WORKER,),
             default="0.2"),
    Variable("CALSYNC_OUTBOX_SWEEP_SECONDS", "outbox_sweep_after", _parse_positive_int,
             "Entries left unpublished longer than this get a publishing run from the "
             "renewer.", (RENEWER,), default="60"),
    Variable("CALSYNC_DELETION_WAIT_SECONDS", "deletion_wait", _parse_positive_int,
             "An unsubscribe finishes only once its `subscription_deleted` message is "
             "published; when the outbox has been stuck this long (its oldest unpublished "
             "entry), the renewer deletes the subscription anyway.", (RENEWER,),
             default="86400"),
    Variable("CALENDAR_API_ENDPOINT", "calendar_api_endpoint", _parse_url,
             "Calendar API root (the emulator locally).", (WORKER, RENEWER),
             default="", required=False, local_only=True),
    Variable("CALSYNC_OAUTH_TOKEN_URI", "oauth_token_uri", _parse_url,
             "OAuth token endpoint (the emulator's /token locally).", (WORKER, RENEWER, API),
             default="", required=False, local_only=True),
    Variable("CALSYNC_OAUTH_AUTH_URI", "oauth_auth_uri", _parse_url,
             "OAuth consent page users are sent to (the emulator's locally).", (API,),
             default="", required=False, local_only=True),
    Variable("CLOUD_TASKS_EMULATOR_HOST", "tasks_emulator_host", _parse_host_port,
             "host:port of a Cloud Tasks emulator.", ALL_FUNCTIONS,
             default="", required=False, local_only=True),
    Variable("CALSYNC_JSON_LOGS", "json_logs", _parse_bool,
             "One JSON object per log line (Cloud Logging).", ALL_FUNCTIONS,
             default="true"),
)


@dataclass(frozen=True)
class Settings:
    """Validated settings; build with `Settings.from_env()`."""

    project: str
    region: str
    tasks_queue: str
    worker_url: str
    tasks_invoker_sa: str = ""
    webhook_url: str = ""
    renewer_url: str = ""
    renewer_invoker_sa: str = ""
    renewer_queue: str = ""
    renewal_shards: int = 1
    renewals_per_minute: int = 1000
    renewal_slot: int = 60
    project_calls_per_minute: int = 9000
    user_calls_per_minute: int = 480
    calls_per_task: int = 1
    user_budget_shards: int = 16
    dispatch_deadline: int = 1800
    channel_token_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    credential_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    oauth_client_id: str = ""
    oauth_client_secret: str = field(default="", repr=False)
    delegation_sa: str = ""
    delegation_key_file: str = ""
    channel_ttl: int = 604800
    pending_channel_grace: int = 120
    renewal_backoff: int = 60
    renewal_window: int = 86400
    channel_claim: int = 300
    channel_record_retention: int = 86400
    give_up_attempts: int = 5
    task_max_backoff: int = 0  # unset: the sweep age
    min_sync_interval: float = 2.0
    safety_net_interval: int = 21600
    safety_net_max_interval: int = 0  # 0: no widening (see `safety_net_longest`)
    sweep_after: int = 120
    lease_seconds: int = 120
    run_budget: float | None = None  # None: five sixths of the dispatch deadline
    notification_record_interval: float = 5.0
    channel_cache_seconds: float = 5.0
    page_size: int = 2500
    commit_bytes: int = 3145728
    feed_retention_days: int = 30
    pubsub_topic: str = ""
    publish_timeout: float = 10.0
    publish_max_messages: int = 1000
    publish_max_bytes: int = 10485760
    publish_retry: float = 0.2
    outbox_sweep_after: int = 60
    deletion_wait: int = 86400
    calendar_api_endpoint: str = ""
    oauth_token_uri: str = ""
    oauth_auth_uri: str = ""
    tasks_emulator_host: str = ""
    json_logs: bool = True

    @property
    def sync_run_budget(self) -> float:
        """How long a sync run begins pages: CALSYNC_RUN_BUDGET_SECONDS, else five
        sixths of the dispatch deadline (a shorter deadline needs no second setting)."""
        return self.run_budget or self.dispatch_deadline * 5 / 6

    @property
    def sync_dispatches_per_second(self) -> int:
        """The sync queue's `max_dispatches_per_second` (terraform/tasks.tf holds the
        same formula, checked by infra/tfcheck/budget_check.py): the project's call
        budget less what renewals may take at most, in tasks of `calls_per_task` calls."""
        return sync_dispatches_per_second(self.project_calls_per_minute,
                                          self.renewals_per_minute, self.calls_per_task)

    @property
    def queue_path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/queues/{self.tasks_queue}"

    @property
    def safety_net_longest(self) -> int:
        """The safety net's longest probe interval in seconds (the staleness bound's
        part): the setting, never shorter than the shortest interval."""
        return max(self.safety_net_interval, self.safety_net_max_interval)

    @property
    def renewer_queue_path(self) -> str:
        """The queue of the renewer's own tasks: its own, or the sync queue."""
        queue = self.renewer_queue or self.tasks_queue
        return f"projects/{self.project}/locations/{self.region}/queues/{queue}"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, function: str | None = None,
        only: Collection[str] | None = None, needs: Collection[str] = (),
    ) -> Settings:
        """Parse and validate; `function` limits the required set to what it reads.

        With `only` (the operator CLI: each command names what it reads) every
        other variable is ignored however malformed, those in `needs` must be
        set, and fields nothing read get an empty value. Raises ConfigError
        naming every missing or malformed variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for var in VARIABLES:
            if only is not None and var.name not in only:
                continue
            if only is not None:
                needed = var.name in needs
            else:
                needed = var.default is None and var.required and (
                    function is None or function == CLI or function in var.used_by)
            raw = env.get(var.name)
            if raw is None or not raw.strip():
                if needed:
                    problems.append(f"{var.name} is not set ({var.description})")
                    continue
                if not var.default:
                    continue
                raw = var.default
            try:
                values[var.attr] = var.parse(raw)
            except ValueError as err:
                shown = "<secret>" if var.secret else repr(raw)
                problems.append(f"{var.name}={shown} {err}")
        problems.extend(_conflicts(values, function, only))
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        if only is not None:
            for spec in dataclasses.fields(cls):
                if (spec.name not in values and spec.default is dataclasses.MISSING
                        and spec.default_factory is dataclasses.MISSING):
                    values[spec.name] = ""  # a field this command never reads
        return cls(**values)


def _conflicts(values: Mapping[str, Any], function: str | None,
               only: Collection[str] | None) -> list[str]:
    """Settings that are each valid but wrong together, for a function that reads them all."""
    def read(name: str) -> bool:
        var = next(v for v in VARIABLES if v.name == name)
        if only is not None:
            return name in only
        return function is None or function == CLI or function in var.used_by

    problems = []
    budget, deadline = values.get("run_budget"), values.get("dispatch_deadline")
    if (read("CALSYNC_RUN_BUDGET_SECONDS") and read("CALSYNC_DISPATCH_DEADLINE_SECONDS")
            and budget is not None and deadline is not None and budget >= deadline):
        # The task would be cut off before the run saves where its pass stands.
        problems.append(f"CALSYNC_RUN_BUDGET_SECONDS={budget:g} must be shorter than "
                        f"CALSYNC_DISPATCH_DEADLINE_SECONDS={deadline} (a run stops beginning "
                        "pages within the task's deadline)")
    ttl, window = values.get("channel_ttl"), values.get("renewal_window")
    if (read("CALSYNC_CHANNEL_TTL_SECONDS") and read("CALSYNC_RENEWAL_WINDOW_SECONDS")
            and ttl is not None and window is not None and ttl <= window):
        # Every channel would be due for renewal the moment it opens: the renewer
        # would replace every channel on every run.
        problems.append(f"CALSYNC_CHANNEL_TTL_SECONDS={ttl} must be longer than "
                        f"CALSYNC_RENEWAL_WINDOW_SECONDS={window} (channels are renewed "
                        "within the window before they expire)")
    project, user = values.get("project_calls_per_minute"), values.get("user_calls_per_minute")
    if read("CALSYNC_PROJECT_CALLS_PER_MINUTE") and project is not None:
        if project > GOOGLE_PROJECT_QUOTA:
            problems.append(f"CALSYNC_PROJECT_CALLS_PER_MINUTE={project} must stay below "
                            f"Google's quota of {GOOGLE_PROJECT_QUOTA} a minute")
        renewals = values.get("renewals_per_minute") or 0
        per_task = values.get("calls_per_task") or 1
        if sync_dispatches_per_second(project, renewals, per_task) < 1:
            # No sync task could ever be dispatched within the budget.
            problems.append(f"CALSYNC_PROJECT_CALLS_PER_MINUTE={project} leaves less than one "
                            f"sync task a second after renewals (2 x CALSYNC_RENEWALS_PER_"
                            f"MINUTE={renewals}) in tasks of {per_task} calls")
    # A bucket refills at the budget and holds a tenth of it: a minute takes at most
    # 1.1 x the budget, which must stay under Google's sliding window.
    if read("CALSYNC_USER_CALLS_PER_MINUTE") and user is not None \
            and user * 11 > GOOGLE_USER_QUOTA * 10:
        problems.append(f"CALSYNC_USER_CALLS_PER_MINUTE={user} must be at most "
                        f"{GOOGLE_USER_QUOTA * 10 // 11} (a burst adds a tenth; Google's quota "
                        f"is {GOOGLE_USER_QUOTA} a minute per user)")
    shards = values.get("renewal_shards") or 1
    if (read("CALSYNC_RENEWAL_SHARDS") and read("CALSYNC_RENEWER_URL") and shards > 1
            and not values.get("renewer_url")):
        # The shard tasks target the renewer itself: without its URL nothing would
        # renew a channel.
        problems.append(f"CALSYNC_RENEWAL_SHARDS={shards} needs CALSYNC_RENEWER_URL (the "
                        "shard tasks' target)")
    return problems


def markdown_table() -> str:
    """The README's configuration table, generated from `VARIABLES`."""
    rows = ["| variable | read by | default | description |", "|---|---|---|---|"]
    for var in VARIABLES:
        readers = ", ".join(var.used_by) if var.used_by != ALL_FUNCTIONS else "all"
        if var.secret:
            default = "secret" + ("" if var.required else ", optional")
        elif var.default is None:
            default = "required"
        else:
            default = f"`{var.default}`" if var.default else "unset"
        note = " Local only (emulators)." if var.local_only else ""
        rows.append(f"| `{var.name}` | {readers} | {default} | {var.description}{note} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
