"""The simulated deployment: the real services wired as `functions/app.py` wires them,
over the in-memory ports, on one virtual clock.

- The webhook (`WebhookService`) receives the fake Calendar's pushes.
- The sync queue dispatches sync tasks to the worker (`SyncWorker` over a
  `SyncEngine` with the subscription service as its channel keeper and the
  outbox when a topic is configured); the renewer's queue its continuations
  and, with CALSYNC_RENEWAL_SHARDS > 1, one task per shard (`parse_job`, as
  `entrypoints.renew_channels` reads the body).
- Cloud Scheduler runs the renewer (`Renewer`, with the outbox sweeper when a
  topic is configured, continuations since a renewer URL is set, and the
  fan-out with more than one shard, as `app.renewer` wires it) every
  `renewer_period` seconds (terraform's `renewal_schedule`).

The world starts in a steady state rather than empty (subscribing a whole
population at once is a different question): every calendar has been synced
once within the safety net's longest interval (times uniform over it), its probe
interval widened to that longest (the adaptive safety net's steady state for a
calendar whose probes find nothing), and has an active channel expiring
uniformly between the end of the renewal window and the channel TTL, which is
where renewals on schedule leave channels. Seeding writes documents directly and
is not metered.

What in the services reads wall time, and what the simulation does about it
(nothing in `functions/` is edited): the webhook's channel cache expires by
`time.monotonic()` (it takes no clock for that): the module's `time` is pointed
at the virtual clock during a run (`virtual_time`); a run's reported duration
and the outbox's wait budget use `time.monotonic()` too, harmlessly (nothing
here measures the first, and the simulated Pub/Sub acknowledges at once, so the
second is never spent); log lines carry wall-clock stamps and are counted by
message, not printed (`counted_logs`).
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from functions import logs
from functions.adapters.firestore.subscriptions import subscription_key
from functions.config import WORKER, Settings
from functions.delivery.outbox import Outbox, OutboxSweeper, PublishLimits
from functions.errors import StoreError
from functions.intake import channel_tokens
from functions.intake import webhook as webhook_module
from functions.intake.webhook import BadNotification, WebhookService, parse_notification
from functions.lifecycle.renewer import Renewer, safety_net_batch, safety_net_lead
from functions.lifecycle.sharding import parse_job
from functions.lifecycle.subscriptions import SubscriptionService
from functions.model import ACTIVE, channel_shard
from functions.sync.engine import SyncEngine, SyncSettings
from functions.sync.worker import SyncWorker
from infra.calendar_emulator.quotas import GOOGLE_PROJECT_PER_MINUTE, GOOGLE_USER_PER_MINUTE
from infra.sim.budget import SimCallBudget
from infra.sim.calendar import FakeCalendar, FakeCalendarSettings, Push, PushFaults
from infra.sim.clock import EventLoop, VirtualClock
from infra.sim.database import SimDatabase
from infra.sim.lifecycle import SimChannelStore, SimLifecycleStore
from infra.sim.ports import SimCalendarPort, SimChannelPort
from infra.sim.probe import StalenessProbe
from infra.sim.pubsub import SimPublisher
from infra.sim.stores import SimStore
from infra.sim.tasks import ROOT, QueueConfig, SimTaskQueue, terraform_defaults
from infra.sim.workload import Population, WorkloadModel

DAY = 86400.0
RENEWER_BATCH = 200  # `Renewer`'s default batch, as app.renewer deploys it
# Google retries a push answered 500/502/503/504 with exponential backoff; how
# long and how often is not documented: assume from 1 s, doubling, 5 times.
PUSH_RETRIES = 5


def sim_settings(overrides: dict[str, str] | None = None, *, topic: bool = True) -> Settings:
    """Settings as terraform deploys them (defaults of `functions.config.VARIABLES`),
    with the renewer's URL and queue set and, unless `topic` is False, a Pub/Sub
    topic."""
    key = base64.b64encode(hashlib.sha256(b"calsync-sim").digest()).decode()
    env = {
        "GOOGLE_CLOUD_PROJECT": "calsync-sim", "CALSYNC_REGION": "us-central1",
        "CALSYNC_TASKS_QUEUE": "calsync-sync",
        "CALSYNC_WORKER_URL": "https://worker.sim.example/",
        "CALSYNC_WEBHOOK_URL": "https://webhook.sim.example/",
        "CALSYNC_RENEWER_URL": "https://renewer.sim.example/",
        "CALSYNC_RENEWER_QUEUE": "calsync-renewer",
        "CALSYNC_CHANNEL_TOKEN_KEYS": f"k1:{key}",
    }
    if topic:
        env["CALSYNC_PUBSUB_TOPIC"] = "calsync-changes"
    # What terraform deploys where it differs from the code's default.
    env.update(TERRAFORM_SETTINGS)
    env.update(overrides or {})
    return Settings.from_env(env, function=WORKER)


def _terraform_settings() -> dict[str, str]:
    """Settings whose deployed value is a terraform variable's default that differs
    from `functions.config`'s (read once, with python-hcl2)."""
    defaults = terraform_defaults(ROOT / "terraform" / "variables.tf")
    return {"CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS":
            str(defaults["safety_net_max_interval_seconds"])}


TERRAFORM_SETTINGS = _terraform_settings()


def renewer_period_from_terraform(variables: Path = ROOT / "terraform" / "variables.tf") -> float:
    """Seconds between Cloud Scheduler's renewer ticks: terraform's `renewal_schedule`
    default (a `*/N * * * *` or `* * * * *` schedule; anything else is refused, so the
    simulation never runs another tick than the one deployed)."""
    schedule = str(terraform_defaults(variables)["renewal_schedule"])
    match = re.fullmatch(r"(\*|\*/(\d+)) \* \* \* \*", schedule)
    if match is None:
        raise ValueError(f"renewal_schedule {schedule!r}: not every N minutes")
    return 60.0 * int(match.group(2) or 1)


@dataclass
class WorldConfig:
    settings: Settings = field(default_factory=sim_settings)
    push: PushFaults = field(default_factory=PushFaults)
    sync_token_410_rate: float = 0.001
    # Cloud Scheduler's tick, as terraform schedules it.
    renewer_period: float = field(default_factory=renewer_period_from_terraform)
    queue: QueueConfig = field(default_factory=QueueConfig.from_terraform)
    renewer_queue: QueueConfig = field(default_factory=QueueConfig.renewer_from_terraform)
    project_quota: int = GOOGLE_PROJECT_PER_MINUTE
    user_quota: int = GOOGLE_USER_PER_MINUTE
    quotas: bool = True
    seed: int = 1
    # The renewer's batch before the sample's scaling (app.renewer deploys 200); a test
    # makes it small to put a large population's due rows against it in miniature.
    renewer_batch: int = RENEWER_BATCH

    @property
    def staleness_bound(self) -> float:
        """The safety net's longest interval plus one renewer run: a change on a quiet
        calendar whose every push is lost reaches the feed within this (DESIGN.md,
        "Staleness bound")."""
        return float(self.settings.safety_net_longest) + self.renewer_period

    @property
    def net_lead(self) -> float:
        """How long before its interval ends the safety net looks at a row: the sync
        queue's wait for a probe within this costs the bound nothing; beyond it, the
        bound grows by the excess (`Figures.published_bound`)."""
        return safety_net_lead(self.settings).total_seconds()


class World:
    """One simulated deployment over one population."""

    def __init__(self, population: Population, model: WorkloadModel,
                 config: WorldConfig) -> None:
        self.population = population
        self.model = model
        self.config = config
        self.rng = random.Random(config.seed)
        self.clock = VirtualClock()
        self.loop = EventLoop(self.clock)
        self.db = SimDatabase(lambda: self.clock.t)
        share = population.share
        settings = config.settings
        self.calendar = FakeCalendar(self.loop, FakeCalendarSettings(
            push=config.push, sync_token_410_rate=config.sync_token_410_rate,
            project_per_minute=max(1, round(config.project_quota * share))
            if config.quotas else None,
            user_per_minute=config.user_quota if config.quotas else None),
            random.Random(config.seed + 1), self._deliver)
        # The renewer's queue is not scaled: its tasks are per tick and shard, not per
        # calendar (a sampled renewer run does proportionally less work). Its rate is
        # the shard count, as terraform sets both from var.renewal_shards.
        self.renewer_queue = SimTaskQueue(
            self.loop, replace(config.renewer_queue,
                               max_dispatches_per_second=float(settings.renewal_shards)),
            self._serve_sync, self._serve_renewal)
        self.queue = SimTaskQueue(self.loop, config.queue.scaled(share),
                                  self._serve_sync, self._serve_renewal,
                                  renewer=self.renewer_queue if settings.renewer_queue
                                  else None)
        topic = bool(settings.pubsub_topic)
        retention = timedelta(days=settings.feed_retention_days)
        self.store = SimStore(self.db, outbox=topic, feed_retention=retention)
        self.lifecycle = SimLifecycleStore(self.db, outbox=topic, feed_retention=retention)
        self.publisher = SimPublisher(lambda: self.clock.t)
        # Owners are whole in a sample, so their budgets are not scaled.
        self.budget = SimCallBudget(self.db, settings.user_calls_per_minute,
                                    settings.user_budget_shards)
        now = self.clock.now
        self.subscriptions = SubscriptionService(
            settings, self.lifecycle, SimChannelPort(self.calendar), self.store, self.queue,
            clock=now)
        limits = PublishLimits(timeout=settings.publish_timeout,
                               max_messages=settings.publish_max_messages,
                               max_bytes=settings.publish_max_bytes,
                               retry_backoff=settings.publish_retry)
        outbox = (Outbox(self.store, self.publisher, settings.project, limits=limits,
                         clock=now) if topic else None)
        self.engine = SyncEngine(
            self.store, SimCalendarPort(self.calendar, num_retries=1), self.queue,
            SyncSettings(page_size=settings.page_size, lease_seconds=float(settings.lease_seconds),
                         min_sync_interval=settings.min_sync_interval,
                         max_commit_bytes=settings.commit_bytes,
                         give_up_attempts=settings.give_up_attempts,
                         calls_per_task=settings.calls_per_task),
            clock=now, channels=self.subscriptions, outbox=outbox,
            deletions=self.subscriptions,  # as app.py: a deletion waits for its message
            budget=self.budget)
        self.worker = SyncWorker(lambda: self.engine)
        # The webhook's store is the plain one in app.py; the requests are the same.
        self.webhook = WebhookService(
            SimChannelStore(self.db), self.store, self.queue, settings.channel_token_keys,
            settings.notification_record_interval, settings.min_sync_interval, clock=now)
        sweeper = (OutboxSweeper(self.store, self.queue,
                                 timedelta(seconds=settings.outbox_sweep_after),
                                 max_backoff=timedelta(seconds=settings.safety_net_interval))
                   if topic else None)
        continue_later = self.queue.enqueue_renewal if settings.renewer_url else None
        # A sample's renewer does its share of the work per run: the batch (rows tried,
        # and a fifth of the rows read, per section and run) scaled with the sample, so
        # a backlog the deployed renewer would build at full size builds here too.
        # The safety net's batch is sized from the sync queue's rate (`safety_net_batch`):
        # the sample's queue rate, as the deployed renewer's is the full queue's.
        self.renewer_batch = max(1, round(config.renewer_batch * share))
        self.net_batch = safety_net_batch(self.renewer_batch,
                                          self.queue.config.max_dispatches_per_second)
        # Its renewals a minute too (`unsharded_budget`, `shard_budget`): the project's
        # calls a minute are scaled, and renewals take their part of them.
        renewer_settings = replace(settings, renewals_per_minute=max(
            1, round(settings.renewals_per_minute * share)))
        self.renewer = Renewer(
            renewer_settings, SimLifecycleStore(self.db, outbox=topic, feed_retention=retention),
            self.subscriptions, continue_later=continue_later, batch=self.renewer_batch,
            clock=now, outbox=sweeper,
            renewer_tasks=continue_later if settings.renewal_shards > 1 else None,
            budget=self.budget, net_batch=self.net_batch)
        self.calendar_of = {f"sub{i:07d}": c.calendar_id
                            for i, c in enumerate(population.calendars)}
        self.probe = StalenessProbe(lambda: self.clock.t,
                                    lambda sub_id: self.calendar_of.get(sub_id, ""))
        self.worker_status: Counter[int] = Counter()
        self.sync_outcomes: Counter[str] = Counter()
        self.webhook_results: Counter[str] = Counter()
        self.renewer_runs = 0
        # Renewer invocations by job: "tick" (the scheduler's), "continuation",
        # "shard" (a fan-out task); ticks and shards come per tick, whatever the size.
        self.renewer_jobs: Counter[str] = Counter()
        self.renewer_totals: Counter[str] = Counter()
        self.measuring = True
        self.log_lines: Counter[str] = Counter()

    # -- seeding ---------------------------------------------------------------------

    def seed(self) -> None:
        """The steady state described in the module docstring."""
        settings = self.config.settings
        db, calendar, rng = self.db, self.calendar, self.rng
        db.io.enabled = False
        calendar.counting = False
        self.queue.counting = self.renewer_queue.counting = False
        self.publisher.counting = False
        keys = settings.channel_token_keys
        key_id = next(iter(keys))
        window, ttl = float(settings.renewal_window), float(min(settings.channel_ttl, 604800))
        # The safety net's steady state: every interval widened to the longest (a calendar
        # with changes syncs on its own), the next look due an interval after the sync.
        interval = float(settings.safety_net_longest)
        shortest = timedelta(seconds=settings.safety_net_interval)
        adaptive = settings.safety_net_longest > settings.safety_net_interval
        topic = bool(settings.pubsub_topic)
        created = self.clock.start - timedelta(days=30)
        for index, cal in enumerate(self.population.calendars):
            sub_id = f"sub{index:07d}"
            calendar.add_calendar(cal.calendar_id, cal.owner)
            for _ in range(self.model.events_per_calendar):
                calendar.write_event(cal.calendar_id)
            synced = self.clock.start - timedelta(seconds=rng.uniform(0.0, interval))
            channel_id = channel_tokens.new_channel_id()
            expires = rng.uniform(window, ttl) if ttl > window else ttl
            calendar.seed_channel(cal.calendar_id, channel_id,
                                  channel_tokens.sign(channel_id, keys), settings.webhook_url,
                                  expires)
            expiration = self.clock.start + timedelta(seconds=expires)
            key = subscription_key(cal.calendar_id, cal.owner)
            db.keys[key] = sub_id
            db.subs[sub_id] = {
                "calendar_id": cal.calendar_id, "owner": cal.owner, "key": key,
                "credentials_ref": "dwd", "status": ACTIVE, "labels": {}, "last_error": None,
                "requested_gen": 1, "requested_at": None, "queued_gen": 1,
                "enqueuing_at": synced, "sweep_at": None,
                "safety_net_at": synced + timedelta(seconds=interval) - shortest,
                **({"net_interval": int(interval)} if adaptive else {}),
                "retry_at": None, "last_synced_at": synced,
                "last_notification_at": None, "created_at": created, "channel_id": channel_id,
                "channel_expiration": expiration, "_version": db.version()}
            events = {e["id"]: e for e in calendar.calendars[cal.calendar_id].events.values()}
            db.events[sub_id] = events  # the same dicts: the calendar never mutates one
            writer: dict[str, Any] = {
                "lease_generation": 1, "lease_until": None, "lease_started_at": synced,
                "claimed_gen": 1, "synced_gen": 1, "synced_at": synced,
                "sync_token": calendar.sync_token(cal.calendar_id), "change_seq": len(events)}
            if topic:
                writer.update(published_seq=len(events), publish_pending_since=None)
            db.writers[sub_id] = writer
            db.put_channel(channel_id, {
                "sub_id": sub_id, "state": ACTIVE,
                "resource_id": calendar.calendars[cal.calendar_id].resource_id,
                "expiration": expiration, "created_at": synced - timedelta(days=1),
                "last_notification_at": None, "last_message_number": 0,
                "renewal_attempts": 0, "token_key_id": key_id,
                "shard": channel_shard(channel_id)})
            db.touch_sub(sub_id)
        calendar.on_change.append(self.probe.changed)
        db.on_entries.append(self.probe.entries)
        db.on_final.append(self.probe.final)
        db.io.enabled = True
        calendar.counting = True
        self.queue.counting = self.renewer_queue.counting = True
        self.publisher.counting = True

    # -- running ---------------------------------------------------------------------

    def run(self, days: float = 1.0, drain: float | None = None) -> None:
        """Changes and measurement for `days`, then (measuring nothing more) until every
        change made is in the feed or `drain` seconds (default: the staleness bound plus
        ten minutes) have passed."""
        end = days * DAY
        self.probe.measure_until = end
        for index, cal in enumerate(self.population.calendars):
            if cal.rate > 0:
                first = self.model.next_change(self.rng, 0.0, cal.rate)
                if first < end:
                    self.loop.at(first, self._change, index, end)
        drain = self.config.staleness_bound + 600.0 if drain is None else drain
        total_ticks = int((end + drain) // self.config.renewer_period)
        for tick in range(total_ticks + 1):
            self.loop.at(tick * self.config.renewer_period, self._tick)
        with virtual_time(self.clock), counted_logs(self.log_lines), _no_cyclic_gc():
            self.loop.run(end)
            self._stop_measuring()
            step = self.config.renewer_period
            t = end
            while t < end + drain and self.probe.unresolved():
                t += step
                self.loop.run(t)

    def _stop_measuring(self) -> None:
        self.measuring = False
        self.db.io.enabled = False
        self.calendar.counting = False
        self.queue.counting = self.renewer_queue.counting = False
        self.publisher.counting = False

    def _change(self, index: int, end: float) -> None:
        cal = self.population.calendars[index]
        live = self.calendar.live_event_ids(cal.calendar_id)
        draw = self.rng.random()
        model = self.model
        if not live or model.update_share <= draw < model.update_share + model.create_share:
            self.calendar.write_event(cal.calendar_id)
        elif draw < model.update_share:
            self.calendar.write_event(cal.calendar_id, self.rng.choice(live))
        else:
            self.calendar.write_event(cal.calendar_id, self.rng.choice(live), delete=True)
        following = model.next_change(self.rng, self.clock.t, cal.rate)
        if following < end:
            self.loop.at(following, self._change, index, end)

    def _tick(self, body: bytes = b"", kind: str = "tick") -> None:
        job = parse_job(body)
        report = (self.renewer.run_shard(job.shard, job.shards) if job.shard is not None
                  else self.renewer.run(fan_out=job.fan_out))
        if self.measuring:
            self.renewer_runs += 1
            self.renewer_jobs["shard" if job.shard is not None else kind] += 1
            for name, value in report.to_json().items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self.renewer_totals[name] += value

    def _serve_sync(self, body: bytes) -> int:
        response = self.worker.handle(body)
        if self.measuring:
            self.worker_status[response.status] += 1
            self.sync_outcomes[response.reason.split(":")[0]] += 1
        return response.status

    def _serve_renewal(self, body: bytes) -> int:
        self._tick(body, "continuation")
        return 200

    def _deliver(self, push: Push, attempt: int = 0) -> None:
        try:
            note = parse_notification("POST", push.headers)
            outcome = self.webhook.handle(note)
            status, result = outcome.status, outcome.result
        except BadNotification:
            status, result = 400, "bad_request"
        except StoreError:
            status, result = 503, "store_unavailable"
        if self.measuring:
            self.webhook_results[result] += 1
        if status in (500, 502, 503, 504) and attempt < PUSH_RETRIES:
            self.loop.after(2.0 ** attempt, self._deliver, push, attempt + 1)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Python's cyclic collector walks every live object on each full pass, and a
    world of 10^5 calendars holds tens of millions: the run slows down as it grows.
    The simulation makes few reference cycles (an exception's traceback now and then),
    so collect once after, not during."""
    gc.collect()
    gc.freeze()  # what seeding built is never garbage
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


class _VirtualMonotonic:
    """Stands in for the `time` module where a service reads `time.monotonic()`."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock

    def monotonic(self) -> float:
        return self._clock.monotonic()


@contextlib.contextmanager
def virtual_time(clock: VirtualClock) -> Iterator[None]:
    """The webhook's channel cache expires by `time.monotonic()` (it takes no clock for
    it): point that module's `time` at the virtual clock for the block. The change in
    `functions/` that would make this unnecessary: `WebhookService` taking a
    `monotonic` callable (default `time.monotonic`) beside its `clock`."""
    saved = webhook_module.time
    webhook_module.time = _VirtualMonotonic(clock)  # type: ignore[assignment]
    try:
        yield
    finally:
        webhook_module.time = saved


class _LineCounter(logging.Handler):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__(level=logging.WARNING)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname} {record.getMessage()}"] += 1


@contextlib.contextmanager
def counted_logs(counts: Counter[str]) -> Iterator[None]:
    """calsync's WARNING and ERROR lines counted by message instead of printed (INFO
    lines, one per run, are dropped before they are formatted: they cost time and the
    world counts runs itself)."""
    logs.configure()
    logger = logging.getLogger("calsync")
    saved_level = logger.level
    logger.setLevel(logging.WARNING)
    saved = [(handler, handler.level) for handler in logger.handlers]
    for handler, _ in saved:
        handler.setLevel(logging.CRITICAL + 1)
    counter = _LineCounter(counts)
    logger.addHandler(counter)
    # The client library's retry check logs each 403 it looks at; counted as ours are.
    library = logging.getLogger("googleapiclient.http")
    library_state = (library.level, library.propagate)
    library.setLevel(logging.WARNING)
    library.propagate = False
    library.addHandler(counter)
    try:
        yield
    finally:
        logger.removeHandler(counter)
        logger.setLevel(saved_level)
        library.removeHandler(counter)
        library.setLevel(library_state[0])
        library.propagate = library_state[1]
        for handler, level in saved:
            handler.setLevel(level)
