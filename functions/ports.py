"""Ports: the small abstract classes the sync core talks to.

Adapters implement them over Google's clients (calendar_api, store, tasks);
tests implement them in memory or wrap the real adapters to inject faults.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from functions.model import (
    ChangePage,
    EventPage,
    EventWrite,
    FinalCommit,
    Lease,
    LeaseAttempt,
    Snapshot,
    Subscription,
    SyncRequest,
)


class CredentialsProvider(ABC):
    """Google credentials that act as a subscription's owner."""

    @abstractmethod
    def credentials_for(self, subscription: Subscription) -> Any:
        """A `google.auth.credentials.Credentials`; raises CredentialsRejected."""


class CalendarPort(ABC):
    """Reads a subscription's calendar."""

    @abstractmethod
    def list_page(
        self,
        subscription: Subscription,
        *,
        sync_token: str | None,
        page_token: str | None,
        page_size: int,
    ) -> EventPage:
        """One page of `events.list` (deleted items included only with a token).

        Raises SyncTokenInvalid, RateLimited, QuotaExhausted, CalendarUnavailable,
        CredentialsRejected, CalendarGone or CalendarRequestRejected.
        """


class TaskQueue(ABC):
    """Queues sync tasks for the worker."""

    @abstractmethod
    def enqueue_sync(
        self,
        sub_id: str,
        generation: int,
        not_before: datetime | None = None,
        *,
        origin: str = "request",
    ) -> None:
        """Queue one sync task for `sub_id`, not dispatched before `not_before`.

        The task is named from (sub_id, origin, generation): queueing the same
        triple twice is a no-op. The webhook uses origin "request" with the
        request generation; the worker "run" with its lease generation and
        "retry" with the retry time. Raises QueueUnavailable.
        """


class SyncStore(ABC):
    """What a sync run reads and writes; every write is fenced by the lease."""

    @abstractmethod
    def get_subscription(self, sub_id: str) -> Subscription | None:
        """The subscription, or None if it does not exist."""

    @abstractmethod
    def acquire_lease(
        self, sub_id: str, now: datetime, until: datetime, min_gap: timedelta | None = None
    ) -> LeaseAttempt:
        """Take the lease (bumping its generation) and claim the pending request.

        IDLE when nothing was requested since the last committed sync; DEFERRED
        (with `retry_at`) when the previous run started less than `min_gap` ago.
        """

    @abstractmethod
    def extend_lease(self, lease: Lease, until: datetime) -> None:
        """Push the lease's expiry; raises LeaseLost."""

    @abstractmethod
    def load_snapshots(self, sub_id: str, event_ids: Iterable[str]) -> dict[str, Snapshot | None]:
        """Stored snapshots by id (None where missing), read in batches."""

    @abstractmethod
    def load_exception_ids(self, sub_id: str, series_id: str) -> list[str]:
        """Ids of stored snapshots whose `recurringEventId` is `series_id`."""

    @abstractmethod
    def has_events(self, sub_id: str) -> bool:
        """Whether any snapshot is stored for the subscription."""

    @abstractmethod
    def iter_live_ids(self, sub_id: str, batch_size: int) -> Iterator[list[str]]:
        """Ids of live (not deleted) snapshots, in id order, a batch at a time."""

    @abstractmethod
    def commit_page(
        self, lease: Lease, writes: Sequence[EventWrite], now: datetime, until: datetime
    ) -> None:
        """Write snapshots and their change entries in one fenced transaction.

        Allocates dense `seq` values after `change_seq`, extends the lease to
        `until`. The caller keeps each call within the transaction write limit.
        Raises LeaseLost (nothing written) or StoreUnavailable.
        """

    @abstractmethod
    def commit_final(self, lease: Lease, sync_token: str, now: datetime) -> FinalCommit:
        """Store the token and `synced_gen`, release the lease; fenced."""

    @abstractmethod
    def release_lease(
        self,
        lease: Lease,
        now: datetime,
        *,
        retry_at: datetime | None = None,
        error: str | None = None,
    ) -> None:
        """Release without committing a token; record a retry time or an error."""


class RequestStore(ABC):
    """The sync-request counters the webhook keeps on a subscription."""

    @abstractmethod
    def record_sync_request(self, sub_id: str, now: datetime) -> SyncRequest:
        """Record that the calendar changed; writes nothing if a request is pending."""

    @abstractmethod
    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        """Note that a task for request `generation` has been queued."""


class FeedReader(ABC):
    """Reads a subscription's change feed."""

    @abstractmethod
    def list_changes(self, sub_id: str, after_cursor: int, limit: int) -> ChangePage:
        """Entries with `seq > after_cursor`, ascending, at most `limit`."""
