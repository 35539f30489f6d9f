"""The sync run's and the webhook's store over `SimDatabase`, as `FirestoreStore` does it.

Each method reads and writes the documents the Firestore adapter reads and
writes (`functions/adapters/firestore/store.py`, `outbox.py`), with the same
conditions, so the simulation bills what production bills: a transaction's
reads, a batch get of N snapshots as N reads, each document in a commit as
one write. Values are converted, and the outbox's fields decided, with the
adapters' own helpers (`_subscription`, `outbox_fields`), so a document means
the same thing here and there.

Not modelled: `write_bytes` (the commit-size cut of a page: the simulated events
are a few hundred bytes, so no page comes near `CALSYNC_COMMIT_BYTES`) is the
port's default, 0.

The simulation is single-threaded but for a run's publishing thread
(`delivery.outbox.RunPublishing`), which only reads here while its run goes on
(`outbox_position`, `read_entries`; the run's own fenced commits record its
progress); so a transaction is a plain sequence of reads and writes, and a
write conditioned on a document's update time always finds it unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.cloud.firestore import DELETE_FIELD

from functions.adapters.firestore import pages
from functions.adapters.firestore.store import (
    ENQUEUE_GRACE,
    FEED_RETENTION,
    LISTING,
    _subscription,
    outbox_fields,
)
from functions.errors import LeaseLost
from functions.model import (
    ACTIVE,
    DEFER_TOLERANCE,
    DELETING,
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
from functions.ports import (
    FeedReader,
    OutboxPosition,
    OutboxStore,
    PublishProgress,
    PublishRelease,
    RequestStore,
    SyncStore,
)
from infra.sim.database import SimDatabase, append_lifecycle, change_path, event_path, writer_path

_GET_ALL_BATCH = 500


class SimStore(SyncStore, RequestStore, FeedReader, OutboxStore):
    """`FirestoreStore` (with the outbox when `outbox` is True) over the simulated
    database."""

    def __init__(self, db: SimDatabase, *, outbox: bool = False,
                 feed_retention: timedelta = FEED_RETENTION) -> None:
        self.db = db
        self._outbox = outbox
        self._retention = feed_retention

    # -- helpers ----------------------------------------------------------------

    def _fenced(self, lease: Lease) -> dict[str, Any]:
        sub_id = lease.subscription.id
        state = self.db.read_writer(sub_id)
        if state.get("lease_generation") != lease.generation:
            raise LeaseLost(f"lease generation {lease.generation} of {sub_id} was taken "
                            f"over (now {state.get('lease_generation')})")
        return state

    # -- SyncStore ----------------------------------------------------------------

    def get_subscription(self, sub_id: str) -> Subscription | None:
        data = self.db.read_sub(sub_id)
        return None if data is None else _subscription(sub_id, data)

    def acquire_lease(self, sub_id: str, now: datetime, until: datetime,
                      min_gap: timedelta | None = None) -> LeaseAttempt:
        data = self.db.read_sub(sub_id)
        state = self.db.read_writer(sub_id)
        if data is None:
            return LeaseAttempt(LeaseOutcome.NOT_FOUND)
        sub = _subscription(sub_id, data)
        if sub.status != ACTIVE:
            return LeaseAttempt(LeaseOutcome.INACTIVE)
        if sub.retry_at is not None and sub.retry_at - now > RETRY_TOLERANCE:
            return LeaseAttempt(LeaseOutcome.DEFERRED, retry_at=sub.retry_at)
        held_until = state.get("lease_until")
        if held_until is not None and held_until > now:
            return LeaseAttempt(LeaseOutcome.BUSY)
        synced = int(state.get("synced_gen") or 0)
        wanted_full = int(data.get("full_resync_requested") or 0)
        full_resync = wanted_full if wanted_full > int(state.get("full_resync_served") or 0) else 0
        resume = pages.decode_progress(state.get(LISTING))
        if (state.get("sync_token") is not None and sub.requested_gen <= synced
                and not full_resync and resume is None):
            return LeaseAttempt(LeaseOutcome.IDLE)
        last_start = state.get("lease_started_at")
        if min_gap and last_start is not None and resume is None and (
                now + DEFER_TOLERANCE < last_start + min_gap):
            return LeaseAttempt(LeaseOutcome.DEFERRED, retry_at=last_start + min_gap)
        generation = int(state.get("lease_generation") or 0) + 1
        claimed = max(sub.requested_gen, int(state.get("claimed_gen") or 0))
        self.db.merge_writer(sub_id, {"lease_generation": generation, "lease_until": until,
                                      "lease_started_at": now, "claimed_gen": claimed})
        lease = Lease(subscription=sub, generation=generation, claimed_gen=claimed,
                      sync_token=None if full_resync else state.get("sync_token"),
                      first_sync=state.get("sync_token") is None, started_at=now, until=until,
                      complete_as_of=state.get("complete_as_of"),
                      full_resync=full_resync,
                      change_seq=int(state.get("change_seq") or 0), resume=resume)
        return LeaseAttempt(LeaseOutcome.ACQUIRED, lease=lease)

    def extend_lease(self, lease: Lease, until: datetime) -> None:
        self._fenced(lease)
        self.db.merge_writer(lease.subscription.id, {"lease_until": until})

    def release_lease(self, lease: Lease, now: datetime, *, retry_at: datetime | None = None,
                      error: str | None = None, reason: str | None = None,
                      ) -> list[dict[str, Any]]:
        sub_id = lease.subscription.id
        state = self._fenced(lease)
        data = self.db.read_sub(sub_id)
        update: dict[str, Any] = {"lease_until": None}
        changes: dict[str, Any] = {}
        written: list[dict[str, Any]] = []
        if retry_at is not None:
            changes["retry_at"] = retry_at
        if error is not None and data is not None and data.get("status", ACTIVE) == ACTIVE:
            changes.update(status="error", last_error=error, last_error_at=now,
                           last_error_reason=reason)
            update.update(self._lifecycle(lease, state, [error_event(reason, error)], now,
                                          written))
        self.db.merge_writer(sub_id, update)
        if changes and data is not None:
            self.db.update_sub(sub_id, changes)
        if error is not None:
            for channel_id, doc in self.db.query_channels(sub_id):
                if doc.get("state") in ("pending", "active", "replaced"):
                    self.db.set_channel_fields(channel_id, {"state": "abandoned"})
        return written

    def _lifecycle(self, lease: Lease, state: dict[str, Any],
                   drafts: Sequence[LifecycleDraft], now: datetime,
                   written: list[dict[str, Any]]) -> dict[str, Any]:
        """As the adapter's `_lifecycle`: the entries, and the writer fields with them."""
        if not drafts:
            return {}
        first = int(state.get("change_seq") or 0)
        seq, entries = append_lifecycle(self.db, lease.subscription.id, state, drafts, now,
                                        now + self._retention)
        written.extend(entries)
        return {"change_seq": seq, **outbox_fields(state, outbox=self._outbox, first=first,
                                                   change_seq=seq, now=now)}

    def note_rejected_run(self, lease: Lease) -> int:
        state = self._fenced(lease)
        refused = int(state.get("rejected_runs") or 0) + 1
        self.db.merge_writer(lease.subscription.id, {"rejected_runs": refused})
        return refused

    def load_snapshots(self, sub_id: str, event_ids: Iterable[str]) -> dict[str, Snapshot | None]:
        ids = list(dict.fromkeys(event_ids))
        stored = self.db.events.get(sub_id, {})
        found: dict[str, Snapshot | None] = {}
        for event_id in ids:
            self.db.io.read(event_path(sub_id, event_id))
            snapshot = stored.get(event_id)
            found[event_id] = None if snapshot is None else dict(snapshot)
        return found

    def load_exception_ids(self, sub_id: str, series_id: str) -> list[str]:
        # Two queries, as the adapter runs (the current and the legacy field).
        stored = self.db.events.get(sub_id, {})
        ids = [i for i, s in stored.items() if s.get("recurringEventId") == series_id]
        paths = [event_path(sub_id, i) for i in ids]
        self.db.io.read_many(paths, "events")
        self.db.io.read_many([], "events")
        return ids

    def has_events(self, sub_id: str) -> bool:
        self.db.io.read_many([], "events")  # a limit(1) query: one read either way
        return bool(self.db.events.get(sub_id))

    def iter_live_ids(self, sub_id: str, batch_size: int) -> Iterator[list[str]]:
        live = sorted(i for i, s in self.db.events.get(sub_id, {}).items()
                      if not s.get("_deleted", False))
        for start in range(0, max(len(live), 1), batch_size):
            batch = live[start:start + batch_size]
            self.db.io.read_many([event_path(sub_id, i) for i in batch], "events")
            if not batch:
                return
            yield batch
            if len(batch) < batch_size:
                return

    def commit_marks(self, lease: Lease, writes: Sequence[EventWrite], now: datetime,
                     until: datetime, progress: ListingProgress | None = None) -> None:
        sub_id = lease.subscription.id
        self._fenced(lease)
        events = self.db.events.setdefault(sub_id, {})
        for write in writes:
            stored = events.get(write.event_id)
            if stored is not None:
                events[write.event_id] = {**stored, LISTED: write.snapshot.get(LISTED)}
            self.db.io.write(event_path(sub_id, write.event_id))
        update: dict[str, Any] = {"lease_until": until}
        if progress is not None:
            update[LISTING] = pages.encode_progress(progress)
        self.db.merge_writer(sub_id, update)

    def commit_page(self, lease: Lease, writes: Sequence[EventWrite], now: datetime,
                    until: datetime, publish: PublishProgress | None = None,
                    progress: ListingProgress | None = None,
                    ) -> list[dict[str, Any]]:
        sub_id = lease.subscription.id
        state = self._fenced(lease)
        seq = int(state.get("change_seq") or 0)
        first = seq
        events = self.db.events.setdefault(sub_id, {})
        changes = self.db.changes.setdefault(sub_id, {})
        entries: list[dict[str, Any]] = []
        expire_at = now + self._retention
        for write in writes:
            snapshot = {**write.snapshot, "_synced_at": now}
            if write.change is not None:
                seq += 1
                snapshot["_seq"] = seq
                change = write.change
                entry = {"seq": seq, "kind": change.kind, "event_id": change.event_id,
                         "recurring_event_id": change.recurring_event_id,
                         "fields": change.fields, "etag": change.etag, "at": now,
                         "expire_at": expire_at}
                changes[seq] = entry
                entries.append(entry)
                self.db.io.write(change_path(sub_id, seq))
            events[write.event_id] = snapshot
            self.db.io.write(event_path(sub_id, write.event_id))
        # The adapter names each page commit (a retried batch recognises its own).
        update: dict[str, Any] = {"change_seq": seq, "lease_until": until,
                                  "commit_id": uuid.uuid4().hex}
        update.update(outbox_fields(state, outbox=self._outbox, first=first, change_seq=seq,
                                    now=now, progress=publish))
        if progress is not None:
            update[LISTING] = pages.encode_progress(progress)
        self.db.merge_writer(sub_id, update)
        for observer in self.db.on_entries:
            observer(sub_id, entries)
        return [dict(entry) for entry in entries]

    def commit_final(self, lease: Lease, sync_token: str, now: datetime,
                     publish: PublishProgress | None = None, *,
                     complete_as_of: datetime | None = None,
                     events: Sequence[LifecycleDraft] = ()) -> FinalCommit:
        sub_id = lease.subscription.id
        state = self._fenced(lease)
        data = self.db.read_sub(sub_id)
        change_seq = int(state.get("change_seq") or 0)
        written: list[dict[str, Any]] = []
        committed: dict[str, Any] = {
            "sync_token": sync_token, "synced_gen": lease.claimed_gen, "lease_until": None,
            "synced_at": now, "rejected_runs": 0,
            # As the adapter: the final commit names its write (a retried commit).
            "commit_id": uuid.uuid4().hex,
            **outbox_fields(state, outbox=self._outbox, first=change_seq,
                            change_seq=change_seq, now=now, progress=publish)}
        if self._outbox and state.get("published_seq") is None \
                and "published_seq" not in committed:
            committed["published_seq"] = change_seq  # no history replay
        if events:
            committed.update(self._lifecycle(lease, {**state, **committed}, events, now,
                                             written))
        stored = state.get("complete_as_of")
        if complete_as_of is not None and (stored is None or complete_as_of > stored):
            committed["complete_as_of"] = complete_as_of
        if lease.full_resync:
            committed["full_resync_served"] = lease.full_resync
        if LISTING in state:
            committed[LISTING] = DELETE_FIELD  # the pass is over
        seq = int({**state, **committed}.get("change_seq") or 0)
        self.db.merge_writer(sub_id, committed)
        if data is None:
            return FinalCommit(0, tuple(written))
        requested = int(data.get("requested_gen") or 0)
        served: dict[str, Any] = {"last_synced_at": now, "retry_at": None, "last_error": None}
        # A probe's due time stands unless the feed grew since it (as the adapter).
        if data.get("probe_at") is None or seq > int(data.get("probe_seq") or 0):
            served["safety_net_at"] = now
        if requested <= lease.claimed_gen:
            served.update(requested_at=None, sweep_at=None)
        elif int(data.get("queued_gen") or 0) < requested:
            served["queued_gen"] = requested
        self.db.update_sub(sub_id, served)
        for observer in self.db.on_final:
            observer(sub_id, sync_token)
        return FinalCommit(requested, tuple(written))

    # -- RequestStore (the webhook's side) ------------------------------------------

    def record_sync_request(self, sub_id: str, now: datetime) -> SyncRequest:
        # One batch get of the subscription and its writer state, then (maybe) one
        # write conditioned on the subscription's update time.
        data = self.db.read_sub(sub_id)
        state = self.db.read_writer(sub_id)
        if data is None:
            return SyncRequest(found=False, needs_task=False)
        requested = int(data.get("requested_gen") or 0)
        last_run = state.get("lease_started_at")
        if data.get("status", ACTIVE) != ACTIVE:
            return SyncRequest(found=True, needs_task=False, generation=requested)
        if requested > int(state.get("claimed_gen") or 0):
            queued = int(data.get("queued_gen") or 0) >= requested
            enqueuing = data.get("enqueuing_at")
            in_flight = enqueuing is not None and now - enqueuing < ENQUEUE_GRACE
            return SyncRequest(found=True, needs_task=not queued and not in_flight,
                               generation=requested, last_run_started_at=last_run)
        generation = requested + 1
        self.db.update_sub(sub_id, {"requested_gen": generation, "requested_at": now,
                                    "enqueuing_at": now, "sweep_at": now})
        return SyncRequest(found=True, needs_task=True, generation=generation,
                           last_run_started_at=last_run)

    def request_full_resync(self, sub_id: str) -> int:
        data = self.db.subs[sub_id]
        self.db.update_sub(sub_id, {
            "full_resync_requested": int(data.get("full_resync_requested") or 0) + 1})
        self.db.read_sub(sub_id)
        return int(data["full_resync_requested"])

    def enqueue_failed(self, sub_id: str, generation: int) -> None:
        self._note_queue(sub_id, generation, None)

    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        self._note_queue(sub_id, generation, now)

    def _note_queue(self, sub_id: str, generation: int, queued_at: datetime | None) -> None:
        data = self.db.read_sub(sub_id)
        if data is None or int(data.get("queued_gen") or 0) >= generation:
            return
        if queued_at is None and data.get("enqueuing_at") is None:
            return  # cleared already (an earlier failure): nothing to write
        self.db.update_sub(sub_id, {"queued_gen": generation, "queued_at": queued_at}
                           if queued_at is not None else {"enqueuing_at": None})

    # -- FeedReader -----------------------------------------------------------------

    def list_changes(self, sub_id: str, after_cursor: int, limit: int) -> ChangePage:
        stored = self.db.changes.get(sub_id, {})
        seqs = sorted(s for s in stored if s > after_cursor)[:limit]
        self.db.io.read_many([change_path(sub_id, s) for s in seqs], "changes")
        entries = tuple(ChangeEntry(seq=s, kind=stored[s]["kind"],
                                    event_id=stored[s]["event_id"],
                                    fields=stored[s]["fields"], etag=stored[s]["etag"],
                                    recurring_event_id=stored[s]["recurring_event_id"],
                                    at=stored[s]["at"]) for s in seqs)
        return ChangePage(entries=entries, next_cursor=seqs[-1] if seqs else after_cursor)

    # -- OutboxStore ------------------------------------------------------------------

    def outbox_position(self, sub_id: str) -> OutboxPosition:
        state = self.db.read_writer(sub_id)
        published = state.get("published_seq")
        return OutboxPosition(
            published_seq=None if published is None else int(published),
            change_seq=int(state.get("change_seq") or 0),
            lease_generation=int(state.get("lease_generation") or 0))

    def read_entries(self, sub_id: str, after: int, upto: int) -> list[dict[str, Any]]:
        if upto <= after:
            return []
        stored = self.db.changes.get(sub_id, {})
        seqs = [s for s in range(after + 1, upto + 1) if s in stored]
        self.db.io.read_many([change_path(sub_id, s) for s in seqs], "changes")
        return [dict(stored[s]) for s in seqs]

    def advance_published(self, lease: Lease, progress: PublishProgress, now: datetime) -> None:
        state = self._fenced(lease)
        change_seq = int(state.get("change_seq") or 0)
        update = outbox_fields(state, outbox=True, first=change_seq, change_seq=change_seq,
                               now=now, progress=progress)
        if update:
            self.db.merge_writer(lease.subscription.id, update)

    def acquire_publish_lease(self, sub_id: str, now: datetime, until: datetime) -> Lease | None:
        data = self.db.read_sub(sub_id)
        state = self.db.read_writer(sub_id)
        published = state.get("published_seq")
        if published is None or int(published) >= int(state.get("change_seq") or 0):
            return None
        sub = _subscription(sub_id, data) if data is not None else None
        if sub is None:
            if (state.get("publish_pending_since") is not None
                    or state.get("publish_sweep_at") is not None):
                self.db.merge_writer(sub_id, {"publish_pending_since": None,
                                              "publish_sweep_at": None})
            return None
        # A subscription being deleted publishes too: its deletion waits for its
        # `subscription_deleted` message, as the adapter's.
        held_until = state.get("lease_until")
        if held_until is not None and held_until > now:
            return None
        generation = int(state.get("lease_generation") or 0) + 1
        self.db.merge_writer(sub_id, {"lease_generation": generation, "lease_until": until})
        return Lease(subscription=sub, generation=generation,
                     claimed_gen=int(state.get("claimed_gen") or 0),
                     sync_token=state.get("sync_token"),
                     first_sync=state.get("sync_token") is None, started_at=now, until=until,
                     complete_as_of=state.get("complete_as_of"))

    def release_publish_lease(self, lease: Lease, progress: PublishProgress | None,
                              now: datetime) -> PublishRelease:
        sub_id = lease.subscription.id
        state = self._fenced(lease)
        data = self.db.read_sub(sub_id)
        change_seq = int(state.get("change_seq") or 0)
        update: dict[str, Any] = {"lease_until": None}
        update.update(outbox_fields(state, outbox=True, first=change_seq,
                                    change_seq=change_seq, now=now, progress=progress))
        self.db.merge_writer(sub_id, update)
        published = int(update.get("published_seq", state.get("published_seq")) or 0)
        pending = (data is not None and data.get("status", ACTIVE) == ACTIVE
                   and int(data.get("requested_gen") or 0) > int(state.get("synced_gen") or 0))
        return PublishRelease(request_pending=bool(pending),
                              backlog=max(change_seq - published, 0),
                              deletion_due=bool(data is not None and data.get("status")
                                                == DELETING and published >= change_seq))

    def pending_outboxes(self, before: datetime, limit: int,
                         after: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        return self._outbox_rows(self.db.outbox_index, "publish_pending_since",
                                 before, limit, after)

    def due_outboxes(self, before: datetime, limit: int,
                     after: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
        return self._outbox_rows(self.db.outbox_due_index, "publish_sweep_at",
                                 before, limit, after)

    def move_outbox(self, row: dict[str, Any], sweep_at: datetime) -> bool:
        """Conditioned on the row as read (the writer has no `_version`: the row
        unchanged stands in for its update time)."""
        sub_id = str(row["_path"]).split("/")[1]
        current = self.db.writers.get(sub_id)
        read = {k: v for k, v in row.items() if k != "_path"}
        if current is None or current != read:
            return False
        self.db.merge_writer(sub_id, {"publish_sweep_at": sweep_at})
        return True

    def _outbox_rows(self, index: Any, key: str, before: datetime, limit: int,
                     after: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
        """Past `after` as it was read (the row may have moved since)."""
        start = None if after is None else (after[key], str(after["_path"]).split("/")[1])
        ids = index.scan(before, limit, include_null=False, start_after=start)
        self.db.io.read_many([writer_path(i) for i in ids], "state")
        return [(i, {**self.db.writers[i], "_path": writer_path(i)}) for i in ids]

