"""Ports: the small abstract classes the services talk to.

Adapters (`functions.adapters`) implement them over Google's clients; tests
implement them in memory or wrap the real adapters to inject faults. Grouped
by who uses them: the sync engine, the webhook, the lifecycle (subscriptions,
channels, renewer), delivery, and the consumer API.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from functions.model import (
    LISTED,
    Account,
    AccountLease,
    AccountLeaseAttempt,
    CalendarListPage,
    ChangePage,
    Channel,
    EventPage,
    EventWrite,
    FinalCommit,
    Lease,
    LeaseAttempt,
    LifecycleDraft,
    ListingProgress,
    Membership,
    Snapshot,
    Subscription,
    SubscriptionRecord,
    SyncRequest,
    Transition,
)

# A page cursor of the renewer's queries: the sort value and the document id of the
# last row read (taken before acting on it, so acting cannot move the cursor).
RowCursor = tuple[Any, str]


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


class CallBudget(ABC):
    """An owner's Calendar call budget per minute (CALSYNC_USER_CALLS_PER_MINUTE),
    a token bucket spread over several documents so that none is written more than
    about once a second (DESIGN.md, "Budgets")."""

    @abstractmethod
    def take(self, owner: str, subscription: str, calls: int, now: datetime, *,
             booked: datetime | None = None, book: bool = True) -> datetime | None:
        """Take `calls` from the owner's budget for `subscription`: None when taken,
        else the time to come back (nothing is taken then). With `book`, that time is
        a slot booked for the caller, behind the others booked: a run deferred to it
        comes back with it as `booked` and is served before runs that did not wait.
        Without `book` (a renewal, which is not deferred to a time), nothing is
        booked."""

    def warm(self, subscription: str) -> None:  # noqa: B027 - optional, no-op by default
        """A take for `subscription` is coming: start what it will read, if this budget
        can tell what that is (a run calls it beside its lease). Never raises; changes
        nothing a take decides."""


class ChannelKeeper(ABC):
    """Keeps a subscription's watch channel open (DESIGN.md, "Channels")."""

    @abstractmethod
    def ensure_channel(self, subscription: Subscription) -> bool:
        """Open a channel unless one is delivering; True if one was opened.

        A run calls it before it lists (watch first, then list). A failed watch
        leaves a record the renewer retries; it raises nothing for that.
        """

    def has_delivering(self, sub_id: str) -> bool | None:
        """Whether the subscription has a delivering channel now (one read, no
        Calendar call); None when this keeper cannot tell without `ensure_channel`.

        A run asks it while it takes its lease (the two reads overlap) and calls
        `ensure_channel` only when the answer is not True: a channel found then
        existed before the run lists, as `ensure_channel`'s own check would find it.
        """
        return None


class Deletions(ABC):
    """Finishes unsubscribes whose `subscription_deleted` message had to be published
    first (DESIGN.md, "Accounts, lifecycle events, watermark")."""

    @abstractmethod
    def finish_deletion(self, sub_id: str, *, unpublished_ok: bool = False) -> int | None:
        """Delete a subscription being deleted unless entries still wait to be
        published (`unpublished_ok`: the caller knows no topic is configured);
        the documents deleted, or None when it is not deleted (not `deleting`,
        or still waiting)."""


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
        A pass left unfinished (`Lease.resume`) is neither: it goes on at once.
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

    def iter_unlisted_ids(self, sub_id: str, mark: int, batch_size: int,
                          after: str | None = None) -> Iterator[tuple[list[str], str]]:
        """What a full pass's reconciliation looks at: live snapshots in id order after
        `after`, `batch_size` at a time; per batch, the ids not stamped with `mark`
        (`_listed`: the pass did not list them) and the last id looked at (where a
        continuation starts again). Holds one batch, whatever the calendar's size.

        This default reads whole snapshots; a store may read only the mark."""
        for batch in self.iter_live_ids(sub_id, batch_size):
            batch = [event_id for event_id in batch if after is None or event_id > after]
            if not batch:
                continue
            stored = self.load_snapshots(sub_id, batch)
            yield ([event_id for event_id in batch
                    if (stored.get(event_id) or {}).get(LISTED) != mark], batch[-1])

    def write_bytes(self, sub_id: str, write: EventWrite) -> int:
        """Bytes `write` adds to a commit request (its snapshot and its entry); runs
        cut page commits to stay under `max_commit_bytes`. 0: no request-size limit."""
        return 0

    def prepare_page(self, lease: Lease, writes: Sequence[EventWrite], now: datetime,
                     after_seq: int) -> Sequence[EventWrite]:
        """`writes` made ready for `commit_page` (same writes, same order): a store may
        encode them here, without I/O, so that a run encodes its next commit while
        the previous one is on the wire. `after_seq` is the `change_seq` the commit
        is expected to follow (the store encodes again if it does not). `now` must
        be the `now` of the `commit_page` call. This default prepares nothing."""
        return writes

    @abstractmethod
    def commit_page(
        self, lease: Lease, writes: Sequence[EventWrite], now: datetime, until: datetime,
        publish: PublishProgress | None = None,
    ) -> Sequence[dict[str, Any]] | None:
        """Write snapshots and their change entries in one fenced transaction;
        the committed entry documents (for the outbox; None: it reads them back).

        Allocates dense `seq` values after `change_seq`, extends the lease to
        `until`. The caller keeps each call within the transaction write limit.
        `publish`: the outbox's progress, recorded in the same transaction (the
        caller passes it only when publishing is on). A run whose pass spans
        pages also passes `progress=ListingProgress(...)`: where the pass stands
        once this commit is in, saved in the same write (`Lease.resume` of the
        next run). `writes` may come from `prepare_page`. Raises LeaseLost
        (nothing written) or StoreUnavailable.
        """

    def commit_marks(self, lease: Lease, writes: Sequence[EventWrite], now: datetime,
                     until: datetime, progress: ListingProgress | None = None) -> None:
        """Write the marks of `writes` (each `listed_only`: `_listed` moved, nothing
        else, no entry) fenced like `commit_page`, with the pass's progress. Kept apart
        from `commit_page` (the feed's data) so that counting page commits counts
        data. This default commits them as a page."""
        extra: dict[str, Any] = {"progress": progress} if progress is not None else {}
        self.commit_page(lease, writes, now, until, **extra)

    @abstractmethod
    def commit_final(self, lease: Lease, sync_token: str, now: datetime,
                     publish: PublishProgress | None = None, *,
                     complete_as_of: datetime | None = None,
                     events: Sequence[LifecycleDraft] = ()) -> FinalCommit:
        """Store the token and `synced_gen` (and the outbox's progress), forget the
        pass's saved progress, release the lease; fenced. `complete_as_of`: when the
        listing this run completed began (the subscription's watermark, which never
        moves back); `events`: lifecycle entries the run decided (`resync_required`),
        written in the same transaction and returned in `FinalCommit.entries`."""

    @abstractmethod
    def release_lease(
        self,
        lease: Lease,
        now: datetime,
        *,
        retry_at: datetime | None = None,
        error: str | None = None,
        reason: str | None = None,
    ) -> Sequence[dict[str, Any]] | None:
        """Release without committing a token; record a retry time or an error
        (`reason`: a stable word such as `reauthorization_required`). An active
        subscription put in `error` gets its lifecycle entry (`error` or
        `reauthorization_required`) in the same fenced transaction; the entries
        written are returned (decoded), for the outbox."""

    @abstractmethod
    def note_rejected_run(self, lease: Lease) -> int:
        """Count a run the Calendar API refused as a request (a 4xx); fenced. Returns
        the runs refused in a row (the final commit starts the count again)."""


class RequestStore(ABC):
    """The sync-request counters the webhook keeps on a subscription."""

    @abstractmethod
    def record_sync_request(self, sub_id: str, now: datetime) -> SyncRequest:
        """Record that the calendar changed; writes nothing if a request is pending."""

    def begin_request(self, sub_id: str) -> Callable[[datetime], SyncRequest]:
        """`record_sync_request` for `sub_id` in two halves, for a caller that must first
        check something else (the webhook, its channel): what the request reads may be
        read from now on (a notification is in), while the caller checks; the callable
        returned records the request (from that read) once the caller has decided to.
        By default nothing is read ahead."""
        return lambda now: self.record_sync_request(sub_id, now)

    @abstractmethod
    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        """Note that a task for request `generation` has been queued."""

    @abstractmethod
    def enqueue_failed(self, sub_id: str, generation: int) -> None:
        """Queueing the task for `generation` failed: the next request queues it."""

    @abstractmethod
    def request_full_resync(self, sub_id: str) -> int:
        """Ask the next run to list in full and reconcile; the request's number."""


class FeedReader(ABC):
    """Reads a subscription's change feed."""

    @abstractmethod
    def list_changes(self, sub_id: str, after_cursor: int, limit: int) -> ChangePage:
        """Entries with `seq > after_cursor`, ascending, at most `limit`."""


@dataclass(frozen=True)
class FeedHead:
    """Where a subscription's feed stands, read with a page: the last `seq` issued and
    the watermark (`complete_as_of`: every change Google applied before it is in the
    feed at a `seq` up to `change_seq`)."""

    change_seq: int
    complete_as_of: datetime | None = None


class FeedStore(ABC):
    """The feed's documents as stored, for the API's feed reader (`api.feed.Feed`).

    Entries and snapshots come back decoded (field names restored). Each method
    is one consistent read; unknown subscriptions raise SubscriptionNotFound.
    """

    @abstractmethod
    def read_changes(self, sub_id: str, cursor: int,
                     limit: int) -> tuple[FeedHead, list[dict[str, Any]]]:
        """The feed's head and up to `limit` entries with `seq > cursor`, ascending, read
        together; raises CursorAhead when `cursor > change_seq`."""

    @abstractmethod
    def change_entry(self, sub_id: str, seq: int) -> dict[str, Any] | None:
        """One entry, or None if it is not stored (never was, or expired and deleted)."""

    @abstractmethod
    def first_events(self, sub_id: str, limit: int,
                     include_deleted: bool) -> tuple[FeedHead, list[tuple[str, Snapshot]]]:
        """The feed's head and the first `limit` snapshots in id order, read together."""

    @abstractmethod
    def events_after(self, sub_id: str, after_id: str, limit: int,
                     include_deleted: bool) -> list[tuple[str, Snapshot]]:
        """Up to `limit` snapshots after `after_id`, in id order."""

    @abstractmethod
    def event(self, sub_id: str, event_id: str) -> Snapshot:
        """One snapshot; raises EventMissing."""


class LifecycleStore(ABC):
    """What the subscription service and the renewer keep in the database:
    subscriptions and their statuses, channel records, the renewer's queries.

    Implemented over Firestore by `adapters.firestore.subscriptions.SubscriptionStore`; unit
    tests use an in-memory fake (tests/unit/lifecycle).
    """

    @abstractmethod
    def create_or_get(self, sub: Subscription, now: datetime) -> tuple[Subscription, bool]:
        """Create with the first sync request recorded, or find the one for the same
        (calendar, owner); True when created."""

    @abstractmethod
    def get(self, sub_id: str) -> tuple[Subscription, dict[str, Any]] | None:
        """The subscription and its raw document, or None."""

    @abstractmethod
    def writer_state(self, sub_id: str) -> dict[str, Any]:
        """The raw `state/writer` document (empty if none)."""

    @abstractmethod
    def list_all(self, limit: int = 1000) -> list[tuple[Subscription, dict[str, Any]]]:
        """Every subscription, up to `limit`."""

    @abstractmethod
    def update(self, sub_id: str, fields: dict[str, Any]) -> None:
        """Set fields on the subscription (bookkeeping only, never `status`)."""

    @abstractmethod
    def transition(self, sub_id: str, allowed: Iterable[str], to: str, now: datetime,
                   fields: dict[str, Any] | None = None,
                   request_sync: bool = False,
                   event: Callable[[str, dict[str, Any]], LifecycleDraft | None] | None = None,
                   ) -> Transition:
        """Conditional status change; raises InvalidTransition or LookupError. `event`,
        given the status left and the subscription's document as read, names the
        lifecycle entry the change writes in the same transaction (None: none);
        `Transition.event_seq` is its seq."""

    @abstractmethod
    def begin_delete(self, sub_id: str, now: datetime,
                     event: LifecycleDraft | None = None) -> bool:
        """Mark `deleting` and fence runs in flight; False if gone. `event` is
        appended to the feed in the same transaction when the status moves (once:
        a resumed deletion writes no second entry)."""

    @abstractmethod
    def delete_tree(self, sub_id: str, credentials_ref: str) -> int:
        """Delete everything of the subscription; returns the documents deleted."""

    @abstractmethod
    def clear_request_marker(self, sub_id: str, requested_gen: int) -> bool:
        """Unset `requested_at` and `sweep_at` if `requested_gen` is still current."""

    @abstractmethod
    def update_if(self, sub_id: str, expect: dict[str, Any], fields: dict[str, Any]) -> bool:
        """Set `fields` on the subscription only if each field of `expect` still has that
        value (absent counts as None), atomically; False if not (or gone). The renewer
        moves rows with it, and claims a sweep or a resumed deletion."""

    @abstractmethod
    def channels_of(self, sub_id: str) -> list[Channel]:
        """Every channel record of the subscription."""

    @abstractmethod
    def delivering_channels(self, sub_id: str) -> list[Channel]:
        """The subscription's `pending` and `active` channels."""

    @abstractmethod
    def channel_doc(self, channel_id: str) -> dict[str, Any]:
        """The raw channel record (empty if none)."""

    @abstractmethod
    def save_channel(self, channel: Channel, now: datetime, **fields: Any) -> datetime | None:
        """Create or replace a channel record (with its shard, `channel_shard`); the
        write's update time when the store knows it (None otherwise)."""

    @abstractmethod
    def activate_channel(self, channel_id: str, sub_id: str, resource_id: str,
                         expiration: datetime, version: datetime | None = None) -> bool:
        """Record a watch response on a channel still `pending` (and name it the
        subscription's current channel); False when it is not pending any more (stopped
        by a pause, abandoned by the renewer, deleted): it must not deliver. Raises
        ResourceMismatch. `version`: the update time `save_channel` returned; while
        nobody wrote the record since, the write needs no read first."""

    @abstractmethod
    def set_channel(self, channel_id: str, fields: dict[str, Any]) -> None:
        """Set bookkeeping fields on a channel record (never its `state`: `move_channel`)."""

    @abstractmethod
    def move_channel(self, channel_id: str, from_states: Iterable[str],
                     fields: dict[str, Any], version: datetime | None = None) -> bool:
        """Set `fields` (with a new `state`) only while the channel is in one of
        `from_states`, atomically; False if it is not (or gone). States only move
        forward: a stopped or abandoned channel never delivers again. `version`: the
        update time at which the caller read the channel in one of `from_states`;
        while nobody wrote it since, the write needs no read first."""

    @abstractmethod
    def delete_channel(self, channel_id: str, state: str) -> bool:
        """Delete the channel record if it is still in `state`; False if not."""

    @abstractmethod
    def claim_channel(self, channel_id: str, state: str, now: datetime,
                      until: datetime, claimant: str = "",
                      version: datetime | None = None) -> bool:
        """True for exactly one caller while the channel is in `state` and unclaimed
        (or its claim expired); the claim names `claimant`. `version`: the update time
        of the row as a query returned it (in `state`, unclaimed); while nobody wrote
        it since, the claim needs no read first."""

    @abstractmethod
    def claim_held(self, channel_id: str, claimant: str) -> Channel | None:
        """The channel as stored now (its `version` set) if `claimant` still holds its
        claim (nobody took it over); None otherwise."""

    @abstractmethod
    def due_channels(self, state: str, before: datetime, limit: int,
                     after: RowCursor | None = None, shard: tuple[int, int] | None = None,
                     ) -> list[tuple[Channel, dict[str, Any]]]:
        """Channels in `state` whose `expiration` is at or before `before`, soonest first,
        each with its `version`; `after` is the (expiration, id) of the last row of the
        previous page, as read. `shard` = (k, n): only channels whose stored shard is
        one of `shard_values(k, n)` (channels stored without one are not found)."""

    @abstractmethod
    def assign_shards(self, channel_ids: Sequence[str]) -> int:
        """Store its shard on each channel record still there (records written before
        channels had one); how many were written."""

    @abstractmethod
    def shard_backfill(self) -> dict[str, Any]:
        """The renewer's progress in giving old channel records their shard (empty
        before it starts)."""

    @abstractmethod
    def save_shard_backfill(self, fields: dict[str, Any]) -> None:
        """Replace the backfill's progress record."""

    @abstractmethod
    def subscriptions_where(self, field: str, before: datetime, limit: int,
                            after: RowCursor | None = None,
                            ) -> list[tuple[Subscription, dict[str, Any]]]:
        """Subscriptions (any status) whose `field` is at or before `before`, oldest first;
        documents where it is null or absent are not in the query. `after` is the
        (value, id) of the last row of the previous page, as read."""

    @abstractmethod
    def oldest_request(self) -> datetime | None:
        """`requested_at` of the oldest recorded request of an active subscription."""

    @abstractmethod
    def record_event(self, sub_id: str, kind: str, details: dict[str, Any],
                     now: datetime) -> int:
        """Append a lifecycle entry (`kind` one of `model.SUBSCRIPTION_EVENT_KINDS` or
        `ACCOUNT_EVENT_KINDS`, no `event_id`, `details` a small map) to the
        subscription's feed, taking the next `seq` and marking the outbox in the same
        transaction; returns its `seq`. Raises LookupError for an unknown subscription.
        """


class ChannelStore(ABC):
    """What the webhook reads and writes about channels."""

    @abstractmethod
    def get_channel(self, channel_id: str) -> Channel | None:
        """The channel, or None when unknown."""

    @abstractmethod
    def learn_resource_id(self, channel_id: str, resource_id: str) -> None:
        """Record the resource id of a pending channel; raises ResourceMismatch."""

    @abstractmethod
    def record_notification(
        self, channel: Channel, message_number: int, now: datetime
    ) -> datetime | None:
        """Note the latest notification on the channel and its subscription.

        Conditional on `channel.version` (when set): if anyone wrote the
        channel since it was read (another instance noting a notification,
        the renewer), nothing is written. Returns the channel's new version,
        or None when nothing was written (lost that race, or deleted).
        """


@dataclass(frozen=True)
class OutMessage:
    """One Pub/Sub message: its data and attributes."""

    data: bytes
    attributes: dict[str, str]


class Publisher(ABC):
    """Publishes messages to the outbox's topic, in order per ordering key."""

    @abstractmethod
    def resume(self, ordering_key: str) -> None:
        """Let the key publish again after a failure (the client refuses it until then)."""

    @abstractmethod
    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        """Start publishing; the future's result is the message id. It fails with
        `PublishRefused` when Pub/Sub refuses this message itself (too large, a bad
        attribute), with another error when the topic or the service fails."""

    def submit_batch(self, ordering_key: str,
                     messages: Sequence[OutMessage]) -> list[Future[str]]:
        """`submit` each, in order, one future per message; after a message that
        failed at once, the rest are not sent (their futures fail too)."""
        futures: list[Future[str]] = []
        for message in messages:
            if futures and futures[-1].done() and futures[-1].exception() is not None:
                unsent: Future[str] = Future()
                unsent.set_exception(RuntimeError("not sent: an earlier message failed"))
                futures.append(unsent)
                continue
            futures.append(self.submit(ordering_key, message))
        return futures


@dataclass(frozen=True)
class OutboxPosition:
    """What `state/writer` says of the outbox, with the lease it is fenced by."""

    published_seq: int | None  # None: the outbox never started (no topic yet)
    change_seq: int
    lease_generation: int


@dataclass(frozen=True)
class PublishProgress:
    """How far a run's publishing got; recorded with the run's next fenced write."""

    published_seq: int  # every entry up to here was acknowledged (or skipped: expired)
    # When the first entry still unpublished was committed (its `at`), when known:
    # `publish_pending_since` follows it, so its age is the backlog's.
    oldest_unpublished_at: datetime | None = None
    stalled: bool = False  # the run tried and got nothing acknowledged: the sweep backs off


@dataclass(frozen=True)
class PublishRelease:
    """What releasing a publish-only lease found."""

    request_pending: bool  # an active subscription's request is not synced yet
    backlog: int  # entries still unpublished (`change_seq - published_seq`)
    # Being deleted and everything published (its `subscription_deleted` message too):
    # the deletion can finish now.
    deletion_due: bool = False


class OutboxStore(ABC):
    """The outbox's side of `state/writer` (DESIGN.md, "Delivery (outbox)")."""

    @abstractmethod
    def outbox_position(self, sub_id: str) -> OutboxPosition:
        """`published_seq`, `change_seq` and the lease generation, in one read."""

    @abstractmethod
    def read_entries(self, sub_id: str, after: int, upto: int) -> list[dict[str, Any]]:
        """The stored change entries `after < seq <= upto`, ascending, decoded."""

    @abstractmethod
    def advance_published(self, lease: Lease, progress: PublishProgress, now: datetime) -> None:
        """Record `progress` on its own (a run ending without a commit to carry it);
        fenced: raises LeaseLost."""

    @abstractmethod
    def acquire_publish_lease(self, sub_id: str, now: datetime, until: datetime) -> Lease | None:
        """Take the lease only to publish, when entries wait unpublished and no run
        holds it; claims no sync request. A subscription being deleted publishes
        too (its deletion waits for its `subscription_deleted` message); a gone one
        drops its outbox: nothing of it will be published."""

    @abstractmethod
    def release_publish_lease(self, lease: Lease, progress: PublishProgress | None,
                              now: datetime) -> PublishRelease:
        """Release a publish-only lease, recording `progress`; fenced: raises LeaseLost."""

    @abstractmethod
    def pending_outboxes(self, before: datetime, limit: int,
                         after: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(sub_id, writer state) with `publish_pending_since <= before`, oldest first;
        `after`: a row this returned, to read past it."""

    @abstractmethod
    def due_outboxes(self, before: datetime, limit: int,
                     after: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(sub_id, writer state) with `publish_sweep_at <= before` (the sweep's sort
        key), earliest first; `after`: a row this returned, to read past it as read."""

    @abstractmethod
    def move_outbox(self, row: dict[str, Any], sweep_at: datetime) -> bool:
        """Set the `publish_sweep_at` of a row read by `due_outboxes` or
        `pending_outboxes`, unless the row was written since (whatever wrote it
        set what it needs): whether it moved."""


# -- channels on Google's side ---------------------------------------------------


@dataclass(frozen=True)
class OpenedChannel:
    channel_id: str
    resource_id: str
    expiration: datetime


class ChannelPort(ABC):
    """Opens and stops watch channels for a subscription's calendar."""

    @abstractmethod
    def watch(self, subscription: Subscription, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        """`events.watch`; raises the calendar errors of `functions.errors`."""

    @abstractmethod
    def stop(self, subscription: Subscription, channel_id: str, resource_id: str) -> None:
        """`channels.stop`; a channel Google no longer knows counts as stopped."""


class RefreshTokenVault(ABC):
    """Users' OAuth refresh tokens, sealed at rest (`credentials/{id}`)."""

    @abstractmethod
    def store_refresh_token(self, refresh_token: str, credential_id: str | None = None) -> str:
        """Seal and save; returns the subscription's `credentials_ref`."""

    @abstractmethod
    def refresh_token(self, credential_id: str) -> str:
        """The plain token; raises CredentialsRejected or Misconfigured."""

    @abstractmethod
    def delete(self, credential_id: str) -> None:
        """Forget a sealed token."""


class KeyUsage(ABC):
    """Which keys stored secrets use (key rotation, `lifecycle.rotation`)."""

    @abstractmethod
    def sealed_key_ids(self) -> Iterator[tuple[str, str]]:
        """(credential id, id of the key that sealed it, or "malformed") per stored token."""

    @abstractmethod
    def check_opens(self, credential_id: str) -> None:
        """Raise SealError unless the configured keys open the stored token."""

    @abstractmethod
    def reseal(self, credential_id: str) -> bool:
        """Re-seal under the current key; False if already current or gone; SealError."""

    @abstractmethod
    def channel_key_ids(self, states: Iterable[str], now: datetime) -> Iterator[str | None]:
        """The signing key id of each unexpired channel in `states` (None: not recorded)."""


# -- accounts: the calendar list and the subscriptions it brings --------------------


class AccountTaskQueue(ABC):
    """Queues calendar-list tasks (`{"account_id": ...}`) for the worker."""

    @abstractmethod
    def enqueue_account_sync(self, account_id: str, generation: int,
                             not_before: datetime | None = None, *,
                             origin: str = "request") -> None:
        """Queue one calendar-list task, named from (account_id, origin, generation) as
        sync tasks are; the same triple twice is a no-op. Raises QueueUnavailable."""


class CalendarListPort(ABC):
    """An account's calendar list on Google's side: list, watch, stop."""

    @abstractmethod
    def list_page(self, account: Account, *, sync_token: str | None,
                  page_token: str | None) -> CalendarListPage:
        """One page of `calendarList.list` (deleted and hidden entries included).

        Raises SyncTokenInvalid (410: list in full), RateLimited, CalendarUnavailable,
        CredentialsRejected, CalendarRequestRejected or Misconfigured.
        """

    @abstractmethod
    def watch(self, account: Account, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        """`calendarList.watch`; raises the calendar errors of `functions.errors`."""

    @abstractmethod
    def stop(self, account: Account, channel_id: str, resource_id: str) -> None:
        """`channels.stop`; a channel Google no longer knows counts as stopped."""


class AccountRequestStore(ABC):
    """The list-sync request counters the webhook keeps on an account (as
    `RequestStore` for a subscription: a pending request costs no write)."""

    @abstractmethod
    def record_list_request(self, account_id: str, now: datetime) -> SyncRequest:
        """Record that the calendar list changed; writes nothing if a request is pending."""

    @abstractmethod
    def mark_queued(self, account_id: str, generation: int, now: datetime) -> None:
        """Note that a task for request `generation` has been queued."""

    @abstractmethod
    def enqueue_failed(self, account_id: str, generation: int) -> None:
        """Queueing the task for `generation` failed: the next request queues it."""


class AccountStore(AccountRequestStore):
    """Accounts in the database: `accounts/{id}`, `account_keys/{key}`, the calendar
    list's writer state (token and fenced lease), the account's channels, and the
    subscriptions it follows. Implemented over Firestore by
    `adapters.firestore.accounts.AccountFirestoreStore`."""

    # -- accounts --

    @abstractmethod
    def create_or_get(self, account: Account, now: datetime) -> tuple[Account, bool]:
        """Create with the first list request recorded, or find the one of the same owner;
        True when created."""

    @abstractmethod
    def get(self, account_id: str) -> tuple[Account, dict[str, Any]] | None:
        """The account and its raw document, or None."""

    @abstractmethod
    def writer_state(self, account_id: str) -> dict[str, Any]:
        """The raw `accounts/{id}/state/writer` document (empty if none)."""

    @abstractmethod
    def list_accounts(self, after: str | None, limit: int) -> list[tuple[Account, dict[str, Any]]]:
        """Up to `limit` accounts in id order after the id `after`."""

    @abstractmethod
    def update(self, account_id: str, fields: dict[str, Any]) -> None:
        """Set bookkeeping fields (never `status`); raises LookupError when gone."""

    @abstractmethod
    def update_if(self, account_id: str, expect: dict[str, Any], fields: dict[str, Any]) -> bool:
        """Compare and set atomically (absent counts as None); False if not (or gone)."""

    @abstractmethod
    def transition(self, account_id: str, allowed: Iterable[str], to: str, now: datetime,
                   fields: dict[str, Any] | None = None, request_sync: bool = False,
                   full: bool = False) -> Transition:
        """Conditional status change (optionally recording a list request, `full`: a full
        relisting); raises InvalidTransition or LookupError."""

    @abstractmethod
    def set_credentials(self, account_id: str, credentials_ref: str) -> None:
        """The account's credential is now `credentials_ref` (marked as the account's, so
        no subscription's deletion takes it along); raises LookupError when gone."""

    @abstractmethod
    def credentials_in_use(self, credentials_ref: str) -> bool:
        """Whether any subscription or account still names this credential."""

    @abstractmethod
    def request_full_relisting(self, account_id: str, now: datetime) -> int:
        """Record a list request whose run lists in full and reconciles both ways; its
        generation (0 when the account is not active)."""

    @abstractmethod
    def begin_delete(self, account_id: str, now: datetime) -> bool:
        """Mark `deleting` and fence a run in flight; False if gone."""

    @abstractmethod
    def delete_account(self, account_id: str) -> None:
        """Delete the account's state, channels' records, its document, then its key."""

    @abstractmethod
    def accounts_where(self, field: str, before: datetime, limit: int,
                       after: RowCursor | None = None) -> list[tuple[Account, dict[str, Any]]]:
        """Accounts whose `field` is at or before `before`, oldest first (the renewer's sort
        keys, as `LifecycleStore.subscriptions_where`)."""

    # -- list runs --

    @abstractmethod
    def acquire_lease(self, account_id: str, now: datetime, until: datetime,
                      min_gap: timedelta | None = None) -> AccountLeaseAttempt:
        """Take the lease and claim the pending request (as `SyncStore.acquire_lease`)."""

    @abstractmethod
    def extend_lease(self, lease: AccountLease, until: datetime) -> None:
        """Push the lease's expiry; raises LeaseLost."""

    @abstractmethod
    def commit_final(self, lease: AccountLease, sync_token: str, now: datetime) -> FinalCommit:
        """Store the list's next token and `synced_gen`, release the lease; fenced."""

    @abstractmethod
    def release_lease(self, lease: AccountLease, now: datetime, *,
                      retry_at: datetime | None = None, error: str | None = None,
                      reason: str | None = None) -> None:
        """Release without a token; a retry time, or the account in `error`."""

    @abstractmethod
    def note_rejected_run(self, lease: AccountLease) -> int:
        """Count a run whose listing was refused as a request; the refusals in a row."""

    # -- channels --

    @abstractmethod
    def delivering_channels(self, account_id: str) -> list[Channel]:
        """The account's `pending` and `active` calendar-list channels."""

    @abstractmethod
    def channels_of(self, account_id: str) -> list[Channel]:
        """Every calendar-list channel record of the account."""

    @abstractmethod
    def activate_channel(self, channel_id: str, account_id: str, resource_id: str,
                         expiration: datetime) -> bool:
        """Record a watch response on a channel still `pending` (and name it the account's
        current channel); False when it left `pending`. Raises ResourceMismatch."""

    # -- the subscriptions it follows --

    @abstractmethod
    def members(self, account_id: str, after: str | None,
                limit: int) -> list[tuple[str, dict[str, Any]]]:
        """(sub_id, document) of subscriptions carrying `account_id`, any status, in id
        order after `after`."""

    @abstractmethod
    def count_followed(self, account_id: str) -> int:
        """How many of them are followed now (not `removed` or `deleting`)."""

    @abstractmethod
    def subscription_for(self, calendar_id: str, owner: str) -> tuple[str, dict[str, Any]] | None:
        """(sub_id, document) of the subscription of (calendar, owner), or None."""

    @abstractmethod
    def follow(self, lease: AccountLease, sub_id: str, details: dict[str, Any],
               now: datetime) -> Membership:
        """In one transaction fenced on the lease: the subscription takes the account
        (`account_id`, its credentials), a `removed` one becomes active with a full
        resync requested, and a `calendar_added` entry is appended to its feed unless
        the account already follows it. Raises LeaseLost, LookupError when gone,
        InvalidTransition while it is being deleted."""

    @abstractmethod
    def disown_unfollowed(self, sub_id: str, now: datetime) -> bool:
        """In one transaction: a subscription no account follows is marked `deleting`
        (a run in flight on it fenced) so that no follow can take it from then on;
        False (nothing written) if an account follows it, or it is gone."""

    @abstractmethod
    def unfollow(self, lease: AccountLease, sub_id: str, details: dict[str, Any],
                 now: datetime, purge_at: datetime) -> Membership:
        """In one transaction fenced on the lease: a subscription the account follows
        becomes `removed` (data kept until `purge_at`), a run in flight on it is fenced,
        and a `calendar_removed` entry is appended; anything else: nothing."""


# -- the consumer API (`functions.api`; `api.wiring` fills them) ----------------------


@dataclass(frozen=True)
class Subscribed:
    """What subscribing did: `created` False means it existed; `queued` False
    means the renewer's sweep will enqueue the initial sync."""

    sub_id: str
    created: bool
    queued: bool


class SubscriptionCommands(ABC):
    """The lifecycle, as `SubscriptionService` implements it.

    Raise `functions.errors.SubscriptionNotFound` for an unknown id and
    `functions.errors.InvalidTransition` for a change the status forbids; a
    change to the status it already has is a no-op.
    """

    @abstractmethod
    def subscribe(self, calendar_id: str, owner: str, credentials_ref: str,
                  labels: dict[str, str]) -> Subscribed: ...

    @abstractmethod
    def reauthorize(self, sub_id: str, credentials_ref: str) -> None:
        """A fresh OAuth grant for an existing subscription: switch to it, drop
        the old one, and resume if it was in `error` awaiting reauthorization."""

    @abstractmethod
    def pause(self, sub_id: str) -> None: ...

    @abstractmethod
    def resume(self, sub_id: str) -> None: ...

    @abstractmethod
    def unsubscribe(self, sub_id: str) -> None: ...

    @abstractmethod
    def resync(self, sub_id: str, full: bool) -> None: ...


class SubscriptionReader(ABC):
    """Subscriptions as the API shows them (DESIGN.md, "The /v1 contract")."""

    @abstractmethod
    def get(self, sub_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def search(self, status: str | None, labels: tuple[tuple[str, str], ...],
               page_token: str | None, limit: int,
               account: str | None = None) -> tuple[list[dict[str, Any]], str | None]: ...


class SubscriptionRecords(ABC):
    """Subscriptions' documents for the API's views (`api.views.SubscriptionViews`)."""

    @abstractmethod
    def get(self, sub_id: str) -> SubscriptionRecord | None: ...

    @abstractmethod
    def search(self, status: str | None, labels: tuple[tuple[str, str], ...],
               after: str | None, limit: int,
               account: str | None = None) -> list[SubscriptionRecord]:
        """Up to `limit` records in id order after the id `after`, every filter matching
        (`account`: only those carrying that `account_id`)."""


class FeedPort(ABC):
    """The change feed and the current events (`functions.api.feed.Feed`)."""

    @abstractmethod
    def changes(self, sub_id: str, query: Any) -> Any:
        """A `ChangesPage`; raises `SubscriptionNotFound`, `CursorAhead`, `CursorExpired`."""

    @abstractmethod
    def events(self, sub_id: str, page_token: str | None, limit: int,
               include_deleted: bool) -> Any:
        """An `EventsPage`; raises `SubscriptionNotFound` (and ApiError for a bad token)."""

    @abstractmethod
    def event(self, sub_id: str, event_id: str) -> dict[str, Any]:
        """One event item; raises `SubscriptionNotFound`, `EventMissing`."""


@dataclass(frozen=True)
class ExchangedGrant:
    owner_email: str
    refresh_token: str = field(repr=False)
    scopes: tuple[str, ...]


class CodeExchanger(ABC):
    @abstractmethod
    def exchange(self, code: str, redirect_uri: str,
                 code_verifier: str | None) -> ExchangedGrant: ...

    @abstractmethod
    def consent_config(self) -> dict[str, Any]:
        """`client_id`, `scopes`, `auth_uri`, `access_type`, `prompt`."""


class CredentialSealer(ABC):
    @abstractmethod
    def seal(self, refresh_token: str) -> str:
        """Seal and store at once; the subscription's `credentials_ref`."""

    @abstractmethod
    def discard(self, credentials_ref: str) -> None:
        """Delete a sealed credential that ended up unused."""


@dataclass(frozen=True)
class Connected:
    """What connecting an account did: `created` False means it existed (its credentials
    and policy are now the ones given); `queued` False means the renewer's sweep
    queues the first listing."""

    account_id: str
    created: bool
    queued: bool


class AccountCommands(ABC):
    """Accounts, as `lifecycle.accounts.AccountService` implements them. Raise
    `functions.errors.AccountNotFound` for an unknown id and `InvalidTransition` for a
    change the status forbids."""

    @abstractmethod
    def connect(self, owner: str, credentials_ref: str,
                policy: dict[str, Any] | None) -> Connected:
        """Connect (idempotent per owner); a new credential replaces the account's for
        every subscription it follows; a policy given replaces the account's."""

    @abstractmethod
    def delete(self, account_id: str) -> None:
        """Disconnect: stop its channel, delete its subscriptions and credential."""


class AccountReader(ABC):
    """Accounts as the API shows them (status and health)."""

    @abstractmethod
    def get(self, account_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def search(self, page_token: str | None,
               limit: int) -> tuple[list[dict[str, Any]], str | None]: ...
