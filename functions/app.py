"""Composition root: builds the adapters from Settings when first needed.

Nothing here runs at import time. Entry points ask for a service; tests either
set the environment and call `reset()`, or wire fakes into the services
directly (the classes take their ports as arguments).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from functions.config import CLI, WORKER, Settings
from functions.ports import AccountTaskQueue, TaskQueue
from functions.sync.engine import SyncEngine, SyncSettings
from functions.sync.worker import SyncWorker

_lock = threading.RLock()
_cache: dict[str, Any] = {}


def reset() -> None:
    """Forget every built client (tests change the environment between runs)."""
    with _lock:
        client = _cache.get("firestore")
        _cache.clear()
    if client is not None:
        client.close()


def _memo(key: str, build: Any) -> Any:
    with _lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


def settings(function: str = WORKER) -> Settings:
    """Settings validated for `function` (cached per function)."""
    return _memo(f"settings:{function}", lambda: Settings.from_env(function=function))


def firestore_client(config: Settings) -> Any:
    """One Firestore client per process (FIRESTORE_EMULATOR_HOST switches it)."""
    from google.cloud import firestore

    return _memo("firestore", lambda: firestore.Client(project=config.project))


def store(config: Settings) -> Any:
    """The Firestore store (`SyncStore`, `RequestStore`, `FeedReader`)."""
    from datetime import timedelta

    from functions.adapters.firestore.store import FirestoreStore

    retention = timedelta(days=config.feed_retention_days)
    if config.pubsub_topic:  # commits keep the outbox; see functions/outbox.py
        from functions.adapters.firestore.outbox import OutboxFirestoreStore

        return _memo("store", lambda: OutboxFirestoreStore(firestore_client(config),
                                                           feed_retention=retention))
    return _memo("store", lambda: FirestoreStore(firestore_client(config),
                                                 feed_retention=retention))


def outbox(config: Settings) -> Any:
    """Publishing through the outbox, or None when no topic is configured."""
    if not config.pubsub_topic:
        return None
    from functions.adapters.google.pubsub import PubSubPublisher
    from functions.delivery.outbox import Outbox, PublishLimits

    limits = PublishLimits(timeout=config.publish_timeout,
                           max_messages=config.publish_max_messages,
                           max_bytes=config.publish_max_bytes,
                           retry_backoff=config.publish_retry)
    return _memo("outbox", lambda: Outbox(
        store(config),
        PubSubPublisher(config.project, config.pubsub_topic, rpc_timeout=limits.timeout,
                        max_messages=limits.max_messages, max_bytes=limits.max_bytes),
        config.project, limits=limits))


def feed(config: Settings) -> Any:
    """The feed reader (changes by cursor, event pages) the API and the CLI share."""
    from functions.adapters.firestore.feed import FirestoreFeedStore
    from functions.api.feed import Feed
    from functions.api.tokens import PageTokens

    # Event page tokens are signed with keys derived from the credential keys
    # when there are any; otherwise they are still checked for integrity.
    keys = list(config.credential_keys.values()) or [config.project.encode()]
    return _memo("feed", lambda: Feed(FirestoreFeedStore(firestore_client(config)),
                                       PageTokens(keys)))


def subscription_store(config: Settings) -> Any:
    """Subscriptions, channels and the renewer's queries (`LifecycleStore`) in Firestore."""
    from datetime import timedelta

    from functions.adapters.firestore.subscriptions import SubscriptionStore

    return SubscriptionStore(firestore_client(config), outbox=bool(config.pubsub_topic),
                             feed_retention=timedelta(days=config.feed_retention_days))


def credential_vault(config: Settings) -> Any:
    """Sealed refresh tokens (`credentials/{id}`) under the configured keys."""
    from functions.adapters.firestore.credentials import CredentialVault

    return CredentialVault(firestore_client(config), config.credential_keys)


def key_usage(config: Settings) -> Any:
    """Which keys stored refresh tokens and channel tokens use (key rotation)."""
    from functions.adapters.firestore.keys import FirestoreKeyUsage

    return FirestoreKeyUsage(firestore_client(config), config.credential_keys)


def webhook_service() -> Any:
    """The webhook's service: channel lookups, sync requests, the task queue."""
    from functions.adapters.firestore.accounts import AccountFirestoreStore
    from functions.adapters.firestore.channels import FirestoreChannelStore
    from functions.adapters.firestore.store import FirestoreStore
    from functions.adapters.google.tasks import CloudTasksQueue
    from functions.config import WEBHOOK
    from functions.intake.webhook import WebhookService

    def build() -> Any:
        config = settings(WEBHOOK)
        client = firestore_client(config)
        queue = CloudTasksQueue(config)
        return WebhookService(
            FirestoreChannelStore(client), FirestoreStore(client), queue,
            config.channel_token_keys, config.notification_record_interval,
            config.min_sync_interval, accounts=AccountFirestoreStore(client),
            account_queue=queue, channel_cache_seconds=config.channel_cache_seconds)

    return _memo("webhook", build)


def task_queue(config: Settings) -> Any:
    """The Cloud Tasks queue of sync tasks."""
    from functions.adapters.google.tasks import CloudTasksQueue

    return _memo("queue", lambda: CloudTasksQueue(config))


def calendar(config: Settings) -> Any:
    """The Calendar adapter with per-subscription credentials."""
    from functions.adapters.google.calendar import GoogleCalendar
    from functions.adapters.google.credentials import GoogleCredentialsProvider

    def build() -> Any:
        vault = credential_vault(config) if config.credential_keys else None
        provider = GoogleCredentialsProvider(config, vault)
        # One quick in-run retry of 5xx/429 before the task itself is retried.
        return GoogleCalendar(provider, api_endpoint=config.calendar_api_endpoint,
                              num_retries=1)

    return _memo("calendar", build)


def sync_engine(config: Settings | None = None) -> SyncEngine:
    """The sync engine wired to the real adapters."""
    config = config or settings(WORKER)
    options = SyncSettings(
        page_size=config.page_size,
        lease_seconds=float(config.lease_seconds),
        min_sync_interval=config.min_sync_interval,
        max_commit_bytes=config.commit_bytes,
        give_up_attempts=config.give_up_attempts,
        run_budget=config.sync_run_budget,
        calls_per_task=config.calls_per_task,
    )
    return _memo("engine", lambda: SyncEngine(
        store(config), calendar(config), task_queue(config), options,
        channels=subscription_service(config), outbox=outbox(config),
        deletions=subscription_service(config), budget=call_budget(config)))


def call_budget(config: Settings) -> Any:
    """The owners' Calendar call budgets (`CallBudget`), shared by the worker's runs and
    the renewer's renewals."""
    from functions.adapters.firestore.budget import FirestoreCallBudget

    return _memo("call_budget", lambda: FirestoreCallBudget(
        firestore_client(config), config.user_calls_per_minute, config.user_budget_shards))


def sync_worker() -> SyncWorker:
    """The worker behind the `sync_worker` function: sync runs and calendar-list runs."""
    return _memo("worker", lambda: SyncWorker(lambda: sync_engine(settings(WORKER)),
                                              lambda: account_sync(settings(WORKER))))


def cli_settings() -> Settings:
    """Settings for the operator CLI (every variable optional where it can be)."""
    return settings(CLI)


def subscription_service(config: Settings) -> Any:
    """Subscribe / unsubscribe / pause / resume / status, over the real adapters."""
    from functions.adapters.google.channels import GoogleChannels
    from functions.lifecycle.subscriptions import SubscriptionService

    def build() -> Any:
        return SubscriptionService(
            config, subscription_store(config), GoogleChannels(calendar(config)),
            store(config), task_queue(config))

    return _memo("subscriptions", build)


class _NoQueue(TaskQueue, AccountTaskQueue):
    """The task queue of a service that only reads: it queues nothing."""

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        raise RuntimeError("a read-only subscription service cannot queue a sync")

    def enqueue_account_sync(self, account_id: str, generation: int,
                             not_before: datetime | None = None, *,
                             origin: str = "request") -> None:
        raise RuntimeError("a read-only account service cannot queue a listing")


def subscription_reader(config: Settings) -> Any:
    """The subscription service for `status` and `list_status` only, over Firestore alone.

    It builds no Calendar, credential or Cloud Tasks client, so reading status
    needs no Google credentials against the emulator (and no queue settings).
    It opens and stops no channel and queues nothing: never use it to change a
    subscription.
    """
    from functions.lifecycle.subscriptions import SubscriptionService

    return _memo("subscription_reader", lambda: SubscriptionService(
        config, subscription_store(config), None, store(config), _NoQueue()))


def renewer(config: Settings | None = None) -> Any:
    """The renewer behind the `renew_channels` function."""
    from functions.config import RENEWER
    from functions.lifecycle.renewer import Renewer
    from functions.lifecycle.request_sweeps import NET_PROBES_IN_FLIGHT

    config = config or settings(RENEWER)
    queue = task_queue(config)
    continue_later = queue.enqueue_renewal if config.renewer_url else None
    # CALSYNC_RENEWAL_SHARDS > 1: ticks fan channel renewal out to one task per shard
    # (lifecycle/sharding.py), through the renewer's own queue.
    renewer_tasks = continue_later if config.renewal_shards > 1 else None
    sweeper = None
    if config.pubsub_topic:
        from datetime import timedelta

        from functions.delivery.outbox import OutboxSweeper

        sweeper = OutboxSweeper(store(config), queue,
                                timedelta(seconds=config.outbox_sweep_after),
                                max_backoff=timedelta(seconds=config.safety_net_interval))
    return _memo("renewer", lambda: Renewer(
        config, subscription_store(config), subscription_service(config),
        continue_later=continue_later, outbox=sweeper, renewer_tasks=renewer_tasks,
        accounts=account_renewal(config), budget=call_budget(config),
        net_in_flight=NET_PROBES_IN_FLIGHT))


# -- accounts ---------------------------------------------------------------------


def account_store(config: Settings) -> Any:
    """Accounts, their list state and the subscriptions they follow (`AccountStore`)."""
    from datetime import timedelta

    from functions.adapters.firestore.accounts import AccountFirestoreStore

    return AccountFirestoreStore(firestore_client(config), outbox=bool(config.pubsub_topic),
                                 feed_retention=timedelta(days=config.feed_retention_days))


def account_service(config: Settings) -> Any:
    """Connect, reauthorize, delete and read accounts, over the real adapters."""
    from functions.adapters.google.calendar_list import GoogleCalendarList
    from functions.lifecycle.account_channels import AccountChannels
    from functions.lifecycle.accounts import AccountService

    def build() -> Any:
        accounts = account_store(config)
        channels = AccountChannels(config, accounts, subscription_store(config),
                                   GoogleCalendarList(calendar(config)))
        vault = credential_vault(config) if config.credential_keys else None
        return AccountService(config, accounts, subscription_service(config), channels,
                              task_queue(config), vault)

    return _memo("accounts", build)


def account_reader(config: Settings) -> Any:
    """The account service for `account-status` and `accounts` only, over Firestore alone
    (as `subscription_reader`): it opens, stops and queues nothing."""
    from functions.lifecycle.account_channels import AccountChannels
    from functions.lifecycle.accounts import AccountService

    def build() -> Any:
        accounts = account_store(config)
        channels = AccountChannels(config, accounts, subscription_store(config), None)
        return AccountService(config, accounts, subscription_reader(config), channels,
                              _NoQueue())

    return _memo("account_reader", build)


def account_sync(config: Settings) -> Any:
    """The calendar-list run behind the worker's account tasks."""
    from datetime import timedelta

    from functions.adapters.google.calendar_list import GoogleCalendarList
    from functions.lifecycle.account_sync import AccountSync, AccountSyncSettings

    options = AccountSyncSettings(
        lease_seconds=float(config.lease_seconds), min_sync_interval=config.min_sync_interval,
        give_up_attempts=config.give_up_attempts,
        retention=timedelta(days=config.feed_retention_days))
    return _memo("account_sync", lambda: AccountSync(
        account_store(config), GoogleCalendarList(calendar(config)), account_service(config),
        subscription_service(config), task_queue(config), options,
        budget=call_budget(config)))


def account_renewal(config: Settings) -> Any:
    """The renewer's account work: calendar-list channels, requests, deletions, purges."""
    from functions.lifecycle.account_renewal import AccountRenewal

    return AccountRenewal(account_store(config), account_service(config),
                          subscription_service(config))
