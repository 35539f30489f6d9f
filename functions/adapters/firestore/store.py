"""Firestore adapter: subscriptions, the writer state, snapshots and the change feed.

Data model (DESIGN.md): `subscriptions/{sub}`, `subscriptions/{sub}/state/writer`,
`subscriptions/{sub}/events/{event_id}`, `subscriptions/{sub}/changes/{seq:020d}`,
`channels/{id}`. Every write of a sync run is a transaction that reads
`state/writer` first and aborts unless `lease_generation` is still the run's.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore import catalogue, codec, pages
from functions.adapters.firestore.pages import (
    LISTING,
    Encoded,
    Fence,
    PreparedPage,
    seq_id,
    write_bytes,
)
from functions.errors import LeaseLost, StoreError, StoreRejected, StoreUnavailable
from functions.model import (
    ACTIVE,
    DEFER_TOLERANCE,
    LISTED,
    RETRY_TOLERANCE,
    ChangeEntry,
    ChangePage,
    EventWrite,
    FinalCommit,
    Lease,
    LeaseAttempt,
    LeaseOutcome,
    LifecycleDraft,
    ListingProgress,
    Snapshot,
    Subscription,
    SyncRequest,
    error_event,
)
from functions.ports import FeedReader, PublishProgress, RequestStore, SyncStore

SUBSCRIPTIONS = catalogue.SUBSCRIPTIONS
CHANNELS = catalogue.CHANNELS
EVENTS = catalogue.EVENTS
CHANGES = catalogue.CHANGES
STATE = catalogue.STATE
WRITER = catalogue.WRITER

# Every store query that needs a composite index (terraform/ builds one each),
# from the one catalogue. Single-field queries (`catalogue.SINGLE_FIELD_QUERIES`)
# use Firestore's automatic single-field indexes.
QUERIES: list[dict[str, Any]] = catalogue.QUERIES

FEED_RETENTION = timedelta(days=30)
# A snapshot written before the `event` map layout kept the resource's fields at
# the top level: its exceptions are found by `recurringEventId` too.
_LEGACY_RECURRING_FIELD = "recurringEventId"

_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.TooManyRequests,
    gexc.ResourceExhausted,
    gexc.Unknown,
    gexc.RetryError,
    gexc.GatewayTimeout,
    ConnectionError,
)
_GET_ALL_BATCH = 500
# While a caller is queueing a request's task (the enqueue itself times out
# after 10 s), others treat the request as served by that task.
ENQUEUE_GRACE = timedelta(seconds=15)
_BUMP_ATTEMPTS = 20
# Requests read ahead at once per process (`begin_request`: one per notification in flight).
REQUEST_READ_THREADS = 8
# A page commit conditioned on the run's own last write of `state/writer` finds
# someone else wrote there (a lifecycle entry, the outbox): read again, at most so often.
_FENCE_ATTEMPTS = 5
__all__ = ["FirestoreStore", "seq_id", "write_bytes", "outbox_fields", "refusal"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except (LeaseLost, StoreError):
        raise
    except _TRANSIENT as err:
        raise StoreUnavailable(f"firestore unavailable: {err}") from err
    except ValueError as err:
        # The client's `transactional` gives up on contention with a ValueError.
        if "Failed to commit transaction" not in str(err):
            raise
        raise StoreUnavailable(f"firestore contention: {err}") from err
    except gexc.GoogleAPICallError as err:
        raise StoreError(f"firestore error: {err}") from err


def _subscription(sub_id: str, data: dict[str, Any]) -> Subscription:
    return Subscription(
        id=sub_id,
        calendar_id=data.get("calendar_id", "primary"),
        owner=data.get("owner", ""),
        credentials_ref=data.get("credentials_ref") or "",
        status=data.get("status", ACTIVE),
        last_error=data.get("last_error"),
        requested_gen=int(data.get("requested_gen") or 0),
        retry_at=data.get("retry_at"),
        last_synced_at=data.get("last_synced_at"),
        labels=dict(data.get("labels") or {}),
        created_at=data.get("created_at"),
    )


def refusal(err: BaseException | None) -> str | None:
    """Firestore's reason when it refuses a commit's data itself (sending the same
    data again cannot help), or None for failures worth retrying.

    InvalidArgument covers a document over 1 MiB, a reserved or over-long field
    name, too deep a map, too many index entries and (in production) a request
    over 10 MiB; the emulator answers a request over its 4 MiB gRPC message cap
    with RESOURCE_EXHAUSTED, which the client retries until its deadline.
    """
    if isinstance(err, gexc.RetryError):
        err = err.cause
    if isinstance(err, gexc.InvalidArgument):
        return (err.message or str(err)).splitlines()[0]
    if isinstance(err, gexc.ResourceExhausted) and "exceeds maximum size" in str(err):
        return (err.message or str(err)).splitlines()[0]
    return None


# `state/writer` fields of the outbox (DESIGN.md, "Delivery (outbox)").
_OUTBOX_FIELDS = ("published_seq", "publish_pending_since", "publish_attempts",
                  "publish_attempted_at", "publish_sweep_at")


def outbox_fields(state: dict[str, Any], *, outbox: bool, first: int, change_seq: int,
                  now: datetime, progress: PublishProgress | None = None) -> dict[str, Any]:
    """What a fenced write of a run sets in `state/writer` for the outbox, given the
    state it read, the entries it adds (`first < seq <= change_seq`) and how far its
    publishing got.

    - No topic configured: no outbox, and where one stood is forgotten, so a topic
      configured again starts at `change_seq` (no replay of what came meanwhile).
    - The first commit with entries under a topic starts the outbox at `first`.
    - `published_seq` only rises; `publish_pending_since` is set while entries wait
      (the commit time of the oldest one when known) and cleared once caught up.
    - A run that got nothing acknowledged counts an attempt (`publish_attempts`,
      `publish_attempted_at`): the renewer's sweep backs off from such rows.
    - `publish_sweep_at` is the sweep's sort key (it looks at a row its grace past
      it): the pending time while runs make progress, kept when entries are added
      (the sweep moves it to a failing row's next attempt, `delivery/sweep.py`),
      given to a pending row written before it existed, cleared when caught up.
    """
    if not outbox:
        return {name: firestore.DELETE_FIELD for name in _OUTBOX_FIELDS
                if state.get(name) is not None}
    stored = state.get("published_seq")
    if stored is None:
        if change_seq > first:
            return {"published_seq": first, "publish_pending_since": now,
                    "publish_sweep_at": now}
        return {}
    published = int(stored)
    marks: dict[str, Any] = {}
    moved = progress is not None and progress.published_seq > published
    if moved:
        assert progress is not None
        published = min(progress.published_seq, change_seq)
        marks["published_seq"] = published
    if published >= change_seq:
        return marks | {name: None for name in _OUTBOX_FIELDS[1:] if state.get(name) is not None}
    pending = state.get("publish_pending_since")
    if moved and progress is not None and progress.oldest_unpublished_at is not None:
        pending = max(progress.oldest_unpublished_at, pending or progress.oldest_unpublished_at)
    marks["publish_pending_since"] = pending or now
    if moved or state.get("publish_sweep_at") is None:
        marks["publish_sweep_at"] = marks["publish_pending_since"]
    if progress is not None and progress.stalled and not moved:
        marks["publish_attempts"] = int(state.get("publish_attempts") or 0) + 1
        marks["publish_attempted_at"] = now
    elif moved and state.get("publish_attempts"):
        marks["publish_attempts"] = None
    for name in ("publish_pending_since", "publish_sweep_at"):
        if name in marks and marks[name] == state.get(name):
            del marks[name]
    return marks


def lifecycle_entry(seq: int, draft: LifecycleDraft, now: datetime,
                    expire_at: datetime) -> dict[str, Any]:
    """The stored document of a lifecycle entry: a kind of its own, no event id,
    `details` escaped like an event's fields (DESIGN.md, "Accounts, lifecycle events,
    watermark")."""
    return {"seq": seq, "kind": draft.kind, "event_id": None, "recurring_event_id": None,
            "fields": {}, "details": codec.escape(dict(draft.details)), "etag": None,
            "at": now, "expire_at": expire_at}


def append_lifecycle(transaction: Any, changes: Any, state: dict[str, Any],
                     drafts: Sequence[LifecycleDraft], now: datetime, expire_at: datetime,
                     ) -> tuple[int, list[dict[str, Any]]]:
    """Write `drafts` as the next entries after `state`'s `change_seq` in `transaction`;
    the new `change_seq` and the documents written (the caller updates `state/writer`:
    `change_seq` and, with a topic, the outbox marks)."""
    seq = int(state.get("change_seq") or 0)
    written = []
    for draft in drafts:
        seq += 1
        document = lifecycle_entry(seq, draft, now, expire_at)
        transaction.set(changes.document(seq_id(seq)), document)
        written.append(document)
    return seq, written


def _entry(data: dict[str, Any]) -> ChangeEntry:
    return ChangeEntry(
        seq=int(data["seq"]),
        kind=data["kind"],
        event_id=data["event_id"],
        fields=codec.unescape(data.get("fields") or {}),
        etag=data.get("etag"),
        recurring_event_id=data.get("recurring_event_id"),
        at=data.get("at"),
    )


class FirestoreStore(SyncStore, RequestStore, FeedReader):
    """The store over a `google.cloud.firestore.Client`."""

    # Firestore refuses a larger document; a test may raise it to reach the
    # refusal path on the emulator.
    max_document_bytes = codec.MAX_DOCUMENT_BYTES

    def __init__(
        self, client: firestore.Client, *, feed_retention: timedelta = FEED_RETENTION,
        outbox: bool = False,
    ) -> None:
        self._client = client
        self._feed_retention = feed_retention
        # A topic is configured: commits keep the outbox fields (functions/outbox.py;
        # `outbox_store.OutboxFirestoreStore` sets it and adds the outbox's reads).
        self._outbox = outbox
        # Each run's own last write of state/writer: its next page commit is
        # conditioned on it instead of reading (pages.py).
        self._fences = pages.Fences()
        self._pool: ThreadPoolExecutor | None = None  # requests read ahead (`begin_request`)
        self._pool_lock = threading.Lock()

    # -- references ---------------------------------------------------------

    def write_bytes(self, sub_id: str, write: EventWrite) -> int:
        return write_bytes(sub_id, write)

    def _sub(self, sub_id: str) -> Any:
        return self._client.collection(SUBSCRIPTIONS).document(sub_id)

    def _state(self, sub_id: str) -> Any:
        return self._sub(sub_id).collection(STATE).document(WRITER)

    def _events(self, sub_id: str) -> Any:
        return self._sub(sub_id).collection(EVENTS)

    def _fenced_state(self, transaction: Any, lease: Lease) -> dict[str, Any]:
        state = self._state(lease.subscription.id).get(transaction=transaction).to_dict() or {}
        if state.get("lease_generation") != lease.generation:
            raise LeaseLost(
                f"lease generation {lease.generation} of {lease.subscription.id} was taken "
                f"over (now {state.get('lease_generation')})"
            )
        return state

    # -- subscriptions ------------------------------------------------------

    def save_subscription(self, subscription: Subscription) -> None:
        """Create or replace a subscription document (operators and tests)."""
        with _translated():
            self._sub(subscription.id).set({
                "calendar_id": subscription.calendar_id,
                "owner": subscription.owner,
                "credentials_ref": subscription.credentials_ref,
                "status": subscription.status,
                "last_error": subscription.last_error,
                "requested_gen": subscription.requested_gen,
                "retry_at": subscription.retry_at,
                "last_synced_at": subscription.last_synced_at,
            }, merge=True)

    def get_subscription(self, sub_id: str) -> Subscription | None:
        with _translated():
            snapshot = self._sub(sub_id).get()
        return _subscription(sub_id, snapshot.to_dict() or {}) if snapshot.exists else None

    def get_writer_state(self, sub_id: str) -> dict[str, Any]:
        """The raw `state/writer` document (empty if none): for tools and tests."""
        with _translated():
            return self._state(sub_id).get().to_dict() or {}

    # -- the lease ----------------------------------------------------------

    def acquire_lease(
        self, sub_id: str, now: datetime, until: datetime, min_gap: timedelta | None = None
    ) -> LeaseAttempt:
        """One read of both documents (a consistent batch get) and one write of
        `state/writer` conditioned on that read (its update time, or that it does not
        exist yet): any other write there since (another run's lease, an unsubscribe's
        bump) fails the write whole and the decision is taken again from a new read.
        Two round trips where a transaction takes four (begin, two reads, commit), and
        nothing locks the subscription document the webhook writes. The write's update
        time becomes the run's fence, so its first page commit needs no read either
        (pages.py). A request recorded between the read and the write is served by the
        follow-up `commit_final` queues, as one recorded just after a lease."""
        for _ in range(_FENCE_ATTEMPTS):
            with _translated():
                sub_snap, state_snap = self._read_both(sub_id)
            attempt, update = self._lease_decision(sub_id, sub_snap, state_snap, now, until,
                                                   min_gap)
            if not update:
                return attempt
            batch = self._client.batch()
            if state_snap.exists:
                batch.update(self._state(sub_id), update, option=self._client.write_option(
                    last_update_time=state_snap.update_time))
            else:
                batch.create(self._state(sub_id), update)
            try:
                with _translated():
                    results = batch.commit()
            except StoreError as err:
                # A failed condition, an existing document, or contention.
                if isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Conflict):
                    continue  # someone else wrote state/writer: decide again
                raise
            assert attempt.lease is not None
            self._fences.put(sub_id, attempt.lease.generation,
                             Fence(results[-1].update_time,
                                   {**(state_snap.to_dict() or {}), **update}))
            return attempt
        raise StoreUnavailable(f"state/writer of {sub_id} kept changing under the lease")

    def _read_both(self, sub_id: str) -> tuple[Any, Any]:
        """The subscription and its `state/writer`, in one batch get (one read time)."""
        sub_ref, state_ref = self._sub(sub_id), self._state(sub_id)
        found = {snapshot.reference.path: snapshot
                 for snapshot in self._client.get_all([sub_ref, state_ref])}
        return found[sub_ref.path], found[state_ref.path]

    def _lease_decision(self, sub_id: str, sub_snap: Any, state_snap: Any, now: datetime,
                        until: datetime, min_gap: timedelta | None,
                        ) -> tuple[LeaseAttempt, dict[str, Any]]:
        """What `acquire_lease` answers from what it read, and the `state/writer` fields
        it writes when it takes the lease (empty when it does not)."""
        state = state_snap.to_dict() or {} if state_snap.exists else {}
        if not sub_snap.exists:
            return LeaseAttempt(LeaseOutcome.NOT_FOUND), {}
        data = sub_snap.to_dict() or {}
        sub = _subscription(sub_id, data)
        if sub.status != ACTIVE:
            return LeaseAttempt(LeaseOutcome.INACTIVE), {}
        if sub.retry_at is not None and sub.retry_at - now > RETRY_TOLERANCE:
            return LeaseAttempt(LeaseOutcome.DEFERRED, retry_at=sub.retry_at), {}
        held_until = state.get("lease_until")
        if held_until is not None and held_until > now:
            return LeaseAttempt(LeaseOutcome.BUSY), {}
        synced = int(state.get("synced_gen") or 0)
        wanted_full = int(data.get("full_resync_requested") or 0)
        full_resync = wanted_full if wanted_full > int(
            state.get("full_resync_served") or 0) else 0
        # A pass an earlier run left unfinished goes on at once: it is neither
        # idle nor a new run of a burst.
        resume = pages.decode_progress(state.get(LISTING))
        if (state.get("sync_token") is not None and sub.requested_gen <= synced
                and not full_resync and resume is None):
            return LeaseAttempt(LeaseOutcome.IDLE), {}
        last_start = state.get("lease_started_at")
        if min_gap and last_start is not None and resume is None and (
                now + DEFER_TOLERANCE < last_start + min_gap):
            return LeaseAttempt(LeaseOutcome.DEFERRED, retry_at=last_start + min_gap), {}
        generation = int(state.get("lease_generation") or 0) + 1
        claimed = max(sub.requested_gen, int(state.get("claimed_gen") or 0))
        update = {
            "lease_generation": generation,
            "lease_until": until,
            "lease_started_at": now,
            "claimed_gen": claimed,
        }
        lease = Lease(
            subscription=sub,
            generation=generation,
            claimed_gen=claimed,
            # An operator's full resync lists everything and reconciles, as after a 410.
            sync_token=None if full_resync else state.get("sync_token"),
            first_sync=state.get("sync_token") is None,
            started_at=now,
            until=until,
            full_resync=full_resync,
            complete_as_of=state.get("complete_as_of"),
            change_seq=int(state.get("change_seq") or 0),
            resume=resume,
        )
        return LeaseAttempt(LeaseOutcome.ACQUIRED, lease=lease), update

    def extend_lease(self, lease: Lease, until: datetime) -> None:
        self._fences.drop(lease.subscription.id, lease.generation)

        @firestore.transactional
        def extend(transaction: Any) -> None:
            self._fenced_state(transaction, lease)
            transaction.update(self._state(lease.subscription.id), {"lease_until": until})

        with _translated():
            extend(self._client.transaction())

    def release_lease(
        self,
        lease: Lease,
        now: datetime,
        *,
        retry_at: datetime | None = None,
        error: str | None = None,
        reason: str | None = None,
    ) -> list[dict[str, Any]]:
        """Release; with `error`, an active subscription goes to `error` and, in the
        same fenced transaction, its feed gets the lifecycle entry saying so
        (`model.error_event`). Returns that entry (decoded), for the outbox."""
        sub_id = lease.subscription.id
        written: list[dict[str, Any]] = []
        self._fences.drop(sub_id, lease.generation)

        @firestore.transactional
        def release(transaction: Any) -> None:
            state = self._fenced_state(transaction, lease)
            sub_snap = self._sub(sub_id).get(transaction=transaction)
            update: dict[str, Any] = {"lease_until": None}
            changes: dict[str, Any] = {}
            written.clear()  # a retried transaction starts over
            if retry_at is not None:
                changes["retry_at"] = retry_at
            if error is not None and sub_snap.exists and (
                    (sub_snap.to_dict() or {}).get("status", ACTIVE) == ACTIVE):
                # Only an active subscription goes to `error`: a pause or an
                # unsubscribe that happened meanwhile stands.
                changes.update(status="error", last_error=error, last_error_at=now,
                               last_error_reason=reason)
                update.update(self._lifecycle(transaction, lease, state,
                                              [error_event(reason, error)], now, written))
            transaction.update(self._state(sub_id), update)
            if changes and sub_snap.exists:
                transaction.update(self._sub(sub_id), changes)

        with _translated():
            release(self._client.transaction())
        if error is not None:
            self._abandon_channels(sub_id)
        return [codec.decode_change(document) for document in written]

    def _lifecycle(self, transaction: Any, lease: Lease, state: dict[str, Any],
                   drafts: Sequence[LifecycleDraft], now: datetime,
                   written: list[dict[str, Any]]) -> dict[str, Any]:
        """Lifecycle entries a run decides, written in its fenced transaction; the
        `state/writer` fields that go with them."""
        if not drafts:
            return {}
        changes = self._sub(lease.subscription.id).collection(CHANGES)
        first = int(state.get("change_seq") or 0)
        seq, documents = append_lifecycle(transaction, changes, state, drafts, now,
                                          now + self._feed_retention)
        written.extend(documents)
        return {"change_seq": seq, **outbox_fields(state, outbox=self._outbox, first=first,
                                                   change_seq=seq, now=now)}

    def note_rejected_run(self, lease: Lease) -> int:
        """Count a run whose request the Calendar API refused (a 4xx), fenced; the
        final commit resets the count. Returns the refused runs in a row."""
        @firestore.transactional
        def note(transaction: Any) -> int:
            state = self._fenced_state(transaction, lease)
            refused = int(state.get("rejected_runs") or 0) + 1
            transaction.update(self._state(lease.subscription.id), {"rejected_runs": refused})
            return refused

        with _translated():
            return int(note(self._client.transaction()))

    def _abandon_channels(self, sub_id: str) -> None:
        """A subscription in `error` cannot stop its channels (that needs the
        credentials that were just rejected): mark them abandoned, to expire."""
        query = self._client.collection(CHANNELS).where(
            filter=FieldFilter("sub_id", "==", sub_id))
        with _translated():
            for snapshot in query.stream():
                if (snapshot.to_dict() or {}).get("state") in ("pending", "active", "replaced"):
                    snapshot.reference.update({"state": "abandoned"})

    # -- snapshots ----------------------------------------------------------

    def load_snapshots(self, sub_id: str, event_ids: Iterable[str]) -> dict[str, Snapshot | None]:
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, Snapshot | None] = dict.fromkeys(ids)
        events = self._events(sub_id)
        with _translated():
            for start in range(0, len(ids), _GET_ALL_BATCH):
                refs = [events.document(i) for i in ids[start:start + _GET_ALL_BATCH]]
                for snapshot in self._client.get_all(refs):
                    if snapshot.exists:
                        found[snapshot.id] = codec.decode_snapshot(snapshot.to_dict() or {})
        return found

    def load_exception_ids(self, sub_id: str, series_id: str) -> list[str]:
        found: dict[str, None] = {}
        for field in (codec.RECURRING_FIELD, _LEGACY_RECURRING_FIELD):
            query = self._events(sub_id).where(
                filter=FieldFilter(field, "==", series_id)).select(["__name__"])
            with _translated():
                found.update((snapshot.id, None) for snapshot in query.stream())
        return list(found)

    def has_events(self, sub_id: str) -> bool:
        with _translated():
            return any(True for _ in self._events(sub_id).select(["__name__"]).limit(1).stream())

    def iter_live_ids(self, sub_id: str, batch_size: int,
                      after: str | None = None) -> Iterator[list[str]]:
        """Ids of live snapshots in id order (after `after`), a batch at a time."""
        base = (
            self._events(sub_id)
            .where(filter=FieldFilter("_deleted", "==", False))
            .order_by("__name__")
            .select(["__name__"])
            .limit(batch_size)
        )
        # A cursor on `__name__` is the document's reference (a snapshot after the first batch).
        last: Any = ({"__name__": self._events(sub_id).document(after)}
                     if after is not None else None)
        while True:
            query = base if last is None else base.start_after(last)
            with _translated():
                batch = list(query.stream())
            if not batch:
                return
            yield [snapshot.id for snapshot in batch]
            if len(batch) < batch_size:
                return
            last = batch[-1]

    def iter_unlisted_ids(self, sub_id: str, mark: int, batch_size: int,
                          after: str | None = None) -> Iterator[tuple[list[str], str]]:
        """Scans live ids (`iter_live_ids`) and reads only the mark of each batch (one
        more read per live event, never the snapshots themselves)."""
        batches = (self.iter_live_ids(sub_id, batch_size, after=after) if after is not None
                   else self.iter_live_ids(sub_id, batch_size))
        for batch in batches:
            refs = [self._events(sub_id).document(event_id) for event_id in batch]
            with _translated():
                marks = {snapshot.id: (snapshot.to_dict() or {}).get(LISTED)
                         for snapshot in self._client.get_all(refs, field_paths=[LISTED])
                         if snapshot.exists}
            yield [event_id for event_id in batch
                   if event_id in marks and marks[event_id] != mark], batch[-1]

    # -- commits ------------------------------------------------------------

    def prepare_page(self, lease: Lease, writes: Sequence[EventWrite], now: datetime,
                     after_seq: int) -> Sequence[EventWrite]:
        """Encodes `writes` into a batch (the costly part of a commit: building the
        protobufs), with `seq` following `after_seq`; `commit_page` sends it as it
        is when `change_seq` is still `after_seq`. Whatever cannot be encoded is
        left to `commit_page`, which names it in order."""
        sub_id = lease.subscription.id
        expire_at = now + self._feed_retention
        try:
            encoded = [self._encode(sub_id, w, now, expire_at) for w in writes]
            batch = self._client.batch()
            last_seq, entries = pages.batch_writes(
                batch, self._events(sub_id), self._sub(sub_id).collection(CHANGES),
                encoded, after_seq)
        except StoreRejected:
            return writes
        return PreparedPage(writes, sub_id=sub_id, generation=lease.generation, now=now,
                            encoded=encoded, after_seq=after_seq, batch=batch,
                            last_seq=last_seq, entries=entries)

    def commit_page(
        self, lease: Lease, writes: Sequence[EventWrite], now: datetime, until: datetime,
        publish: PublishProgress | None = None, progress: ListingProgress | None = None,
    ) -> list[dict[str, Any]]:
        """Encode every document first (naming any over 1 MiB before sending),
        then commit; see `_commit_encoded` for a commit Firestore refuses.
        Returns the committed entries (decoded, with their `seq`), for the outbox."""
        if isinstance(writes, PreparedPage) and writes.now == now:
            encoded = writes.encoded
        else:
            expire_at = now + self._feed_retention
            encoded = [self._encode(lease.subscription.id, w, now, expire_at) for w in writes]
        committed: list[dict[str, Any]] = []
        extra: dict[str, Any] = {"publish": publish} if publish is not None else {}
        if progress is not None:
            extra["progress"] = progress
        if isinstance(writes, PreparedPage):
            extra["prepared"] = writes
        # Keyword arguments only when set: subclasses may not take them.
        self._commit_encoded(lease, encoded, until, now, committed, **extra)
        return committed

    def commit_marks(self, lease: Lease, writes: Sequence[EventWrite], now: datetime,
                     until: datetime, progress: ListingProgress | None = None) -> None:
        """Only `_listed` of each write's snapshot (events a full pass listed unchanged),
        fenced like a page commit, with the pass's progress."""
        expire_at = now + self._feed_retention
        encoded = [self._encode(lease.subscription.id, w, now, expire_at) for w in writes]
        extra: dict[str, Any] = {"progress": progress} if progress is not None else {}
        self._commit_encoded(lease, encoded, until, now, [], **extra)

    def _encode(
        self, sub_id: str, write: EventWrite, now: datetime, expire_at: datetime
    ) -> Encoded:
        if write.listed_only:
            return Encoded(write.event_id, {LISTED: write.snapshot.get(LISTED)}, None,
                           listed_only=True)
        # `_seq` and `seq` are placeholders here (same size): the commit
        # allocates them after `change_seq`.
        snapshot = {**write.snapshot, "_synced_at": now}
        if write.change is not None:
            snapshot["_seq"] = 0
        document = codec.encode_snapshot(snapshot)
        base = f"{SUBSCRIPTIONS}/{sub_id}"
        size = codec.document_size(f"{base}/{EVENTS}/{write.event_id}", document)
        if size > self.max_document_bytes:
            raise StoreRejected(f"event {write.event_id} is {size} bytes, over Firestore's "
                                "1 MiB document limit")
        entry = None
        if write.change is not None:
            entry = codec.encode_change(write.change, 0, now, expire_at)
            size = codec.document_size(f"{base}/{CHANGES}/{seq_id(0)}", entry)
            if size > self.max_document_bytes:
                raise StoreRejected(f"the change entry of event {write.event_id} is {size} "
                                    "bytes, over Firestore's 1 MiB document limit")
        return Encoded(write.event_id, document, entry)

    def _commit_encoded(self, lease: Lease, encoded: list[Encoded], until: datetime,
                        now: datetime | None = None,
                        committed: list[dict[str, Any]] | None = None,
                        publish: PublishProgress | None = None,
                        progress: ListingProgress | None = None,
                        prepared: PreparedPage | None = None) -> None:
        """Commit in order; if Firestore refuses the data, commit each half on its
        own, down to the single event it refuses, which is named (permanent).

        Every snapshot and its entry still commit together, fenced and with
        dense `seq`, so committing a page in smaller pieces is harmless; a
        request that was only too large as a whole succeeds in pieces. The
        pass's progress goes with the last piece.
        """
        # Keyword arguments only when set: subclasses may not take them.
        extra: dict[str, Any] = {name: value for name, value in (
            ("publish", publish), ("progress", progress), ("prepared", prepared))
            if value is not None}
        try:
            with _translated():
                self._commit_once(lease, encoded, until, now, committed, **extra)
        except StoreError as err:
            reason = refusal(err.__cause__)
            if reason is None or not encoded:
                raise
            if len(encoded) == 1:
                one = encoded[0]
                why = codec.field_problem(one.snapshot) or (
                    codec.field_problem(one.entry) if one.entry else None) or reason
                raise StoreRejected(
                    f"event {one.event_id} was refused by Firestore: {why}") from err
            half = len(encoded) // 2
            self._commit_encoded(lease, encoded[:half], until, now, committed, publish)
            self._commit_encoded(lease, encoded[half:], until, now, committed, publish,
                                 progress)

    def _commit_once(self, lease: Lease, encoded: list[Encoded], until: datetime,
                     now: datetime | None = None,
                     committed: list[dict[str, Any]] | None = None,
                     publish: PublishProgress | None = None,
                     progress: ListingProgress | None = None,
                     prepared: PreparedPage | None = None) -> None:
        """One fenced commit: the snapshots, their entries, `change_seq`, the
        outbox's fields (`outbox_fields`) and the pass's progress.

        A batch conditioned on `state/writer` as the run's previous commit left it
        (`pages.Fence`); the run's first commit, and any commit that finds
        `state/writer` changed by someone else, reads it first (and checks the
        lease's generation there)."""
        sub_id = lease.subscription.id
        events, changes = self._events(sub_id), self._sub(sub_id).collection(CHANGES)
        now = now or _utcnow()
        fence = self._fences.get(sub_id, lease.generation)
        # Names this commit in state/writer: a failed precondition after a commit the
        # client retried (it may have landed) is then told from someone else's write.
        commit_id = uuid.uuid4().hex
        sent: list[dict[str, Any]] | None = None
        for _ in range(_FENCE_ATTEMPTS):
            if fence is None:
                snapshot = self._state(sub_id).get()
                state = snapshot.to_dict() or {}
                if state.get("lease_generation") != lease.generation:
                    raise LeaseLost(
                        f"lease generation {lease.generation} of {sub_id} was taken "
                        f"over (now {state.get('lease_generation')})")
                fence = Fence(snapshot.update_time, state)
                if sent is not None and state.get("commit_id") == commit_id:
                    self._fences.put(sub_id, lease.generation, fence)  # it did land
                    if committed is not None:
                        committed.extend(codec.decode_change(entry) for entry in sent)
                    return
            first = int(fence.state.get("change_seq") or 0)
            batch = prepared.take_batch(sub_id, lease.generation, now, first) if (
                prepared is not None) else None
            if batch is not None and prepared is not None:
                seq, entries = prepared.last_seq, prepared.entries
            else:
                batch = self._client.batch()
                seq, entries = pages.batch_writes(batch, events, changes, encoded, first)
            update: dict[str, Any] = {"change_seq": seq, "lease_until": until,
                                      "commit_id": commit_id}
            update.update(outbox_fields(fence.state, outbox=self._outbox, first=first,
                                        change_seq=seq, now=now, progress=publish))
            if progress is not None:
                update[LISTING] = pages.encode_progress(progress)
            batch.update(self._state(sub_id), update,
                         option=self._client.write_option(last_update_time=fence.update_time))
            try:
                results = batch.commit()
            except (gexc.FailedPrecondition, gexc.Aborted):
                fence, sent = None, entries  # someone else wrote state/writer: read it again
                self._fences.drop(sub_id, lease.generation)
                continue
            self._fences.put(sub_id, lease.generation,
                             fence.applied(results[-1].update_time, update))
            if committed is not None:
                committed.extend(codec.decode_change(entry) for entry in entries)
            return
        raise StoreUnavailable(f"state/writer of {sub_id} kept changing under the run's "
                               "page commits")

    def commit_final(self, lease: Lease, sync_token: str, now: datetime,
                     publish: PublishProgress | None = None, *,
                     complete_as_of: datetime | None = None,
                     events: Sequence[LifecycleDraft] = ()) -> FinalCommit:
        """Also: `complete_as_of` (when the listing this run completed began) becomes
        the subscription's watermark, never moving back; `events` (lifecycle entries
        the run decided, such as `resync_required`) take the next `seq`; and with a
        topic the outbox starts here if it has not yet (so lifecycle entries recorded
        later, by processes that do not know the topic, are published).

        One batch conditioned on `state/writer` as the run's own last write left it
        (its fence: no read) and on the subscription as read just before (a request
        recorded meanwhile fails the batch whole, and it is decided again from a new
        read of both): two round trips where a transaction takes four. `commit_id`
        names the write, so a commit the client retried after it landed is known."""
        sub_id = lease.subscription.id
        fence = self._fences.get(sub_id, lease.generation)
        commit_id = uuid.uuid4().hex
        sent: tuple[Any, list[dict[str, Any]]] | None = None  # (sub, entries) last sent
        try:
            for _ in range(_FENCE_ATTEMPTS):
                with _translated():
                    if fence is None:
                        sub_snap, state_snap = self._read_both(sub_id)
                        state = (state_snap.to_dict() or {}) if state_snap.exists else {}
                        if sent is not None and state.get("commit_id") == commit_id:
                            return self._final(sent[0], lease, sent[1])  # it did land
                        if state.get("lease_generation") != lease.generation:
                            raise LeaseLost(
                                f"lease generation {lease.generation} of {sub_id} was taken "
                                f"over (now {state.get('lease_generation')})")
                        fence = Fence(state_snap.update_time, state)
                    else:
                        sub_snap = self._sub(sub_id).get()
                batch = self._client.batch()
                written = self._final_writes(batch, lease, fence, sub_snap, sync_token, now,
                                             publish, complete_as_of, events, commit_id)
                try:
                    with _translated():
                        batch.commit()
                except StoreError as err:
                    # Someone else wrote either document (or the client retried a
                    # commit that landed): read both again.
                    if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Conflict):
                        raise
                    fence, sent = None, (sub_snap, written)
                    continue
                return self._final(sub_snap, lease, written)
            raise StoreUnavailable(f"state/writer or subscription {sub_id} kept changing "
                                   "under the final commit")
        finally:
            self._fences.drop(sub_id, lease.generation)

    def _final_writes(self, batch: Any, lease: Lease, fence: Fence, sub_snap: Any,
                      sync_token: str, now: datetime, publish: PublishProgress | None,
                      complete_as_of: datetime | None, events: Sequence[LifecycleDraft],
                      commit_id: str) -> list[dict[str, Any]]:
        """The final commit's writes, added to `batch`; the lifecycle entries written."""
        sub_id = lease.subscription.id
        state = fence.state
        written: list[dict[str, Any]] = []
        change_seq = int(state.get("change_seq") or 0)
        committed: dict[str, Any] = {
            "sync_token": sync_token,
            "synced_gen": lease.claimed_gen,
            "lease_until": None,
            "synced_at": now,
            "rejected_runs": 0,
            "commit_id": commit_id,
            **outbox_fields(state, outbox=self._outbox, first=change_seq,
                            change_seq=change_seq, now=now, progress=publish),
        }
        if self._outbox and state.get("published_seq") is None \
                and "published_seq" not in committed:
            committed["published_seq"] = change_seq  # no history replay
        if events:
            committed.update(self._lifecycle(
                batch, lease, {**state, **committed}, events, now, written))
        stored = state.get("complete_as_of")
        if complete_as_of is not None and (stored is None or complete_as_of > stored):
            committed["complete_as_of"] = complete_as_of
        if lease.full_resync:
            committed["full_resync_served"] = lease.full_resync
        if LISTING in state:
            committed[LISTING] = firestore.DELETE_FIELD  # the pass is over
        batch.update(self._state(sub_id), committed, option=self._client.write_option(
            last_update_time=fence.update_time))
        if not sub_snap.exists:
            return written
        data = sub_snap.to_dict() or {}
        requested = int(data.get("requested_gen") or 0)
        # Synced: the safety net looks again an interval from now. While a probe
        # is out, the due time it set stands (the next look judges it and probes
        # again: one look per probe), unless the feed grew since it: then the
        # probe is judged a shortest interval from now (it may have found a
        # missed change, and the interval drops at once).
        served: dict[str, Any] = {"last_synced_at": now, "retry_at": None,
                                  "last_error": None}
        seq = int({**state, **committed}.get("change_seq") or 0)
        if data.get("probe_at") is None or seq > int(data.get("probe_seq") or 0):
            served["safety_net_at"] = now
        if requested <= lease.claimed_gen:
            # Nothing newer: drop out of the sweep's query at no extra cost.
            served.update(requested_at=None, sweep_at=None)
        elif int(data.get("queued_gen") or 0) < requested:
            # The caller enqueues the follow-up right after this commit; if
            # that fails the run answers 500 and its own retry serves it.
            served["queued_gen"] = requested
        batch.update(self._sub(sub_id), served, option=self._client.write_option(
            last_update_time=sub_snap.update_time))
        return written

    @staticmethod
    def _final(sub_snap: Any, lease: Lease, written: list[dict[str, Any]]) -> FinalCommit:
        requested = int((sub_snap.to_dict() or {}).get("requested_gen") or 0) if (
            sub_snap.exists) else 0
        return FinalCommit(requested,
                           tuple(codec.decode_change(document) for document in written))

    # -- sync requests (the webhook's side) ---------------------------------

    def record_sync_request(self, sub_id: str, now: datetime) -> SyncRequest:
        """Bump `requested_gen` unless a request is already pending.

        No transaction, so a burst of notifications takes no locks: one
        consistent read of the subscription and `state/writer`. A request is
        pending when `requested_gen` is ahead of `claimed_gen`: the run that
        will claim it has not listed yet, so this notification needs no write
        at all (the hot-document rule). It still needs a task when none is
        known to be queued for that generation (`queued_gen` behind) and nobody
        is queueing it right now (`enqueuing_at`, written with the request and
        cleared by a failed enqueue, 15 s grace): an enqueue failed, or its
        caller died before enqueueing. Then `needs_task` names the existing
        generation, and nothing is written: the task's name is the request's,
        so two callers doing this queue one task, and during an outage of the
        queue a notification costs no write at all. Otherwise a write
        conditioned on the subscription's update time increments it (and sets
        the sweep's `sweep_at`); if another notification won that race,
        re-reading finds the request pending. `needs_task` tells the caller to
        queue a task for `generation` and then `mark_queued`.
        """
        return self._record_sync_request(sub_id, now, None)

    def begin_request(self, sub_id: str) -> Callable[[datetime], SyncRequest]:
        """The request's one batch get (the subscription and `state/writer`) starts now,
        on a thread, while the webhook checks the channel; the callable returned records
        the request from it. A read made after the notification came in is as good as
        one made after the check: the write it decides is conditioned on it, and a
        request it finds pending was not claimed before the notification (a run that
        claims it lists after this read). If that read failed, it reads again."""
        refs = [self._sub(sub_id), self._state(sub_id)]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(REQUEST_READ_THREADS,
                                                thread_name_prefix="calsync-request-read")
            ahead = self._pool.submit(lambda: list(self._client.get_all(refs)))
        return lambda now: self._record_sync_request(sub_id, now, ahead)

    def _record_sync_request(self, sub_id: str, now: datetime,
                             ahead: Future[list[Any]] | None) -> SyncRequest:
        sub_ref, state_ref = self._sub(sub_id), self._state(sub_id)
        for attempt in range(_BUMP_ATTEMPTS):
            snapshots = None
            if attempt == 0 and ahead is not None:
                with contextlib.suppress(Exception):  # only a head start: read again
                    snapshots = ahead.result()
            if snapshots is None:
                with _translated():
                    snapshots = list(self._client.get_all([sub_ref, state_ref]))
            found = {snap.reference.path: snap for snap in snapshots}
            sub_snap, state_snap = found.get(sub_ref.path), found.get(state_ref.path)
            if sub_snap is None or not sub_snap.exists:
                return SyncRequest(found=False, needs_task=False)
            data = sub_snap.to_dict() or {}
            state = (state_snap.to_dict() if state_snap is not None else None) or {}
            requested = int(data.get("requested_gen") or 0)
            last_run = state.get("lease_started_at")
            if data.get("status", ACTIVE) != ACTIVE:
                return SyncRequest(found=True, needs_task=False, generation=requested)
            if requested > int(state.get("claimed_gen") or 0):
                # Pending: the run that claims it will see this change too.
                queued = int(data.get("queued_gen") or 0) >= requested
                enqueuing = data.get("enqueuing_at")
                in_flight = enqueuing is not None and now - enqueuing < ENQUEUE_GRACE
                return SyncRequest(found=True, needs_task=not queued and not in_flight,
                                   generation=requested, last_run_started_at=last_run)
            generation = requested + 1
            update = {"requested_gen": generation, "requested_at": now, "enqueuing_at": now,
                      "sweep_at": now}
            try:
                with _translated():
                    sub_ref.update(
                        update,
                        option=self._client.write_option(last_update_time=sub_snap.update_time),
                    )
            except StoreError as err:
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
                continue  # someone else wrote it first: look again
            return SyncRequest(found=True, needs_task=True, generation=generation,
                               last_run_started_at=last_run)
        raise StoreUnavailable(f"subscription {sub_id} too contended to record a request")

    def request_full_resync(self, sub_id: str) -> int:
        """Ask the next run to list in full and reconcile; returns the request number.

        Only a counter on the subscription: the run that serves it drops the
        token inside its own fenced lease, so a run in flight is unaffected.
        """
        with _translated():
            self._sub(sub_id).update({"full_resync_requested": firestore.Increment(1)})
            data = self._sub(sub_id).get().to_dict() or {}
        return int(data.get("full_resync_requested") or 0)

    def enqueue_failed(self, sub_id: str, generation: int) -> None:
        """An enqueue for `generation` failed: let the next caller (Google's
        redelivery of the 503) queue it at once instead of waiting out the grace.
        Writes only when the grace mark is still set, so an outage of the queue
        costs one such write per request, not one per notification."""
        self._note_queue(sub_id, generation, None)

    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        self._note_queue(sub_id, generation, now)

    def _note_queue(self, sub_id: str, generation: int, queued_at: datetime | None) -> None:
        """`queued_gen`/`queued_at` raised to `generation` (or, with None, the
        enqueuing mark cleared), unless a task for it is already noted.

        A conditional write, not a transaction: the webhook calls this during
        bursts, beside the worker's fenced transactions on the same document.
        """
        ref = self._sub(sub_id)
        for _ in range(_BUMP_ATTEMPTS):
            with _translated():
                snapshot = ref.get()
            data = snapshot.to_dict() or {}
            if not snapshot.exists or int(data.get("queued_gen") or 0) >= generation:
                return
            if queued_at is None and data.get("enqueuing_at") is None:
                return  # cleared already (an earlier failure): nothing to write
            update: dict[str, Any] = (
                {"queued_gen": generation, "queued_at": queued_at} if queued_at is not None
                else {"enqueuing_at": None})
            try:
                with _translated():
                    ref.update(update, option=self._client.write_option(
                        last_update_time=snapshot.update_time))
                return
            except StoreError as err:
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
        raise StoreUnavailable(f"subscription {sub_id} too contended to note its task")

    def list_changes(self, sub_id: str, after_cursor: int, limit: int) -> ChangePage:
        query = (
            self._sub(sub_id).collection(CHANGES)
            .where(filter=FieldFilter("seq", ">", after_cursor))
            .order_by("seq")
            .limit(limit)
        )
        with _translated():
            entries = tuple(_entry(snapshot.to_dict() or {}) for snapshot in query.stream())
        return ChangePage(entries=entries, next_cursor=entries[-1].seq if entries else after_cursor)
