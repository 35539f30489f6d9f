"""Delivery: publish every committed change entry to Pub/Sub through an outbox.

DESIGN.md, "Delivery (outbox)". `state/writer.published_seq` is the last seq
Pub/Sub acknowledged; every commit that adds entries sets
`publish_pending_since`. Only the run holding the lease publishes
`published_seq+1 .. change_seq`: after each page commit it submits what the
commit added (without waiting), and before its final commit it waits, at most
`CALSYNC_PUBLISH_TIMEOUT_SECONDS` for the whole run, then advances
`published_seq` in a fenced write. A failure or a timeout is logged and left
to the next run or to the renewer's sweep (`OutboxSweeper`): publishing never
fails or delays a sync beyond that budget. The feed stays the source of truth;
delivery is at least once, in seq order per subscription (ordering key = id).

Where the sweep's marker lives: `publish_pending_since` stays in
`state/writer`, as DESIGN.md puts it, and the sweep is a collection-group
query on `state` (one single-field index with collection-group scope,
`catalogue.COLLECTION_GROUP_QUERIES`). Mirroring it on the subscription
document would put a second document into every page commit's transaction
and make runs write the hot subscription document the webhook writes
(DESIGN.md: it is written about once per run); it would also leave paused
subscriptions, which must still publish, to a status-filtered query.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timedelta
from typing import Any

from functions import logs
from functions.errors import CalsyncError, LeaseLost, PublishRefused
from functions.model import Lease, entry_json
from functions.ports import OutboxStore, OutMessage, Publisher, TaskQueue

EVENT_TYPE = "dev.calsync.event.{kind}"
SUBMIT_CHUNK = 1000  # entries read from the store and submitted per step


def _attributes(entry: dict[str, Any], sub_id: str, labels: dict[str, str],
                project: str) -> dict[str, str]:
    seq = str(entry["seq"])
    attributes = {
        "ce-specversion": "1.0",
        "ce-id": f"{sub_id}/{seq}",
        "ce-source": f"//calsync/projects/{project}/subscriptions/{sub_id}",
        "ce-type": EVENT_TYPE.format(kind=entry["kind"]),
        "ce-subject": str(entry["event_id"]),
        "content-type": "application/json",
        "subscription_id": sub_id,
        "seq": seq,
        "kind": str(entry["kind"]),
        "event_id": str(entry["event_id"]),
    }
    if entry.get("at"):
        attributes["ce-time"] = str(entry["at"])
    attributes.update({f"label_{key}": str(value) for key, value in labels.items()})
    return attributes


def message_for(entry: dict[str, Any], sub_id: str, labels: dict[str, str],
                project: str) -> OutMessage:
    """The message of one entry: the entry as JSON, CloudEvents binary attributes."""
    data = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, default=str)
    return OutMessage(data.encode(), _attributes(entry, sub_id, labels, project))


def marker_for(entry: dict[str, Any], sub_id: str, project: str) -> OutMessage:
    """What replaces a message Pub/Sub refused: same seq, `truncated=true`, no
    labels; the consumer reads the entry from the changes route."""
    small = {"seq": entry["seq"], "kind": entry["kind"], "event_id": entry["event_id"],
             "truncated": True}
    attributes = _attributes(
        {**small, "event_id": str(entry["event_id"])[:1024], "at": entry.get("at")},
        sub_id, {}, project)
    attributes["truncated"] = "true"
    return OutMessage(json.dumps(small, separators=(",", ":")).encode(), attributes)


class Outbox:
    """Publishing for sync runs: `start(lease)` gives one run's publisher."""

    def __init__(self, store: OutboxStore, publisher: Publisher, project: str,
                 timeout: float = 10.0) -> None:
        self.store = store
        self.publisher = publisher
        self.project = project
        self.timeout = timeout

    def start(self, lease: Lease) -> RunPublishing:
        return RunPublishing(self, lease)


class RunPublishing:
    """One run's publishing. No method raises: failures are logged and left."""

    def __init__(self, outbox: Outbox, lease: Lease,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._outbox = outbox
        self._lease = lease
        self._key = lease.subscription.id
        self._monotonic = monotonic
        self._waited = 0.0  # time spent waiting for Pub/Sub, against `outbox.timeout`
        self._cache: dict[int, dict[str, Any]] = {}
        self._inflight: list[tuple[int, Future[str], bool]] = []  # (seq, future, marker)
        self._published: int | None = None  # what state/writer says
        self._acked: int | None = None  # acknowledged by Pub/Sub in this run
        self._submitted: int | None = None
        self._markers: set[int] = set()
        self._resumed = False
        self.stopped = False
        self.published = 0  # messages acknowledged in this run

    # -- what the run calls ---------------------------------------------------

    def committed(self, entries: Iterable[dict[str, Any]] | None) -> None:
        """After a page commit: submit what is new, harvest acknowledgements."""
        for doc in entries or ():
            self._cache[int(doc["seq"])] = doc
        self._guarded(lambda: self._pump(wait=False))

    def finish(self) -> None:
        """Before the final commit: submit the rest and wait (within the budget)."""
        self._guarded(lambda: self._pump(wait=True))

    # -- internals ------------------------------------------------------------

    def _guarded(self, step: Callable[[], None]) -> None:
        if self.stopped:
            return
        try:
            step()
        except LeaseLost as err:
            self._stop("lease lost", err)
        except Exception as err:  # noqa: BLE001 - a publish never fails the sync
            self._stop("publish failed", err)

    def _stop(self, why: str, err: BaseException | None) -> None:
        self.stopped = True
        logs.log("WARNING", "publish deferred", subscription=self._key, outcome=why,
                 published_seq=self._acked, error=_describe(err) if err else None)

    def _remaining(self) -> float:
        return self._outbox.timeout - self._waited

    def _wait(self, future: Future[str]) -> str:
        """The future's result, waiting at most what is left of the run's budget
        (only waiting counts: submitting never blocks)."""
        started = self._monotonic()
        try:
            return future.result(timeout=max(self._remaining(), 0.0))
        finally:
            self._waited += self._monotonic() - started

    def _pump(self, wait: bool) -> None:
        if self._remaining() <= 0:
            return self._stop("publish timeout", None)
        if self._published is None or wait or not self._cache:
            published, change_seq = self._outbox.store.outbox_position(self._key)
            if published is None:
                return None  # the outbox starts with this subscription's next commit
            self._published = max(published, self._published or 0)
        else:
            change_seq = max(self._cache)
        if self._acked is None:
            self._acked = self._published
        if self._submitted is None:
            self._submitted = self._published
        while not self.stopped:
            # A backlog is read and submitted a chunk at a time.
            target = min(change_seq, self._submitted + SUBMIT_CHUNK)
            self._submit(target)
            if self._harvest(wait):
                continue  # a refused message is re-sent (alone or as its marker) at once
            if self._submitted >= change_seq or self._submitted < target:
                break
        if self._acked is not None and self._acked > (self._published or 0):
            self._outbox.store.advance_published(self._lease, self._acked)
            self._published = self._acked
        return None

    def _entries(self, after: int, upto: int) -> list[dict[str, Any]]:
        missing = [seq for seq in range(after + 1, upto + 1) if seq not in self._cache]
        if missing:
            for doc in self._outbox.store.read_entries(self._key, min(missing) - 1, upto):
                self._cache.setdefault(int(doc["seq"]), doc)
        return [self._cache[seq] for seq in range(after + 1, upto + 1) if seq in self._cache]

    def _submit(self, upto: int) -> None:
        assert self._submitted is not None
        if upto <= self._submitted or self.stopped:
            return
        if not self._resumed:
            self._outbox.publisher.resume(self._key)
            self._resumed = True
        for doc in self._entries(self._submitted, upto):
            seq = int(doc["seq"])
            if seq != self._submitted + 1:
                # A hole in the feed (an entry already expired): the consumer fills it
                # from the changes route; say so instead of stalling here.
                logs.log("WARNING", "publish skipped a missing entry", subscription=self._key,
                         seq=self._submitted + 1)
            marker = seq in self._markers
            future = self._send(doc, marker)
            refused = future.exception() if future.done() else None
            if not marker and isinstance(refused, PublishRefused) and refused.alone:
                # Refused before it left (too large): its marker takes its place
                # now, ahead of every later message.
                self._marked(seq, refused)
                marker, future = True, self._send(doc, True)
            self._inflight.append((seq, future, marker))
            self._submitted = seq

    def _send(self, doc: dict[str, Any], marker: bool) -> Future[str]:
        entry = entry_json(doc)
        sub = self._lease.subscription
        message = (marker_for(entry, sub.id, self._outbox.project) if marker
                   else message_for(entry, sub.id, sub.labels, self._outbox.project))
        return self._outbox.publisher.submit(self._key, message)

    def _harvest(self, wait: bool) -> bool:
        """Count acknowledgements in seq order; True when a refusal needs a re-send."""
        while self._inflight and not self.stopped:
            seq, future, marker = self._inflight[0]
            if not wait and not future.done():
                return False
            try:
                self._wait(future)
            except FutureTimeout:
                self._stop("publish timeout", None)
                return False
            except PublishRefused as err:
                self._refused(seq, marker, err)
                return not self.stopped
            except Exception as err:  # noqa: BLE001 - the topic or the service failed
                self._stop("publish failed", err)
                return False
            self._inflight.pop(0)
            self._cache.pop(seq, None)
            self._acked = seq
            self.published += 1
        return False

    def _refused(self, seq: int, marker: bool, err: PublishRefused) -> None:
        """Pub/Sub refused the batch holding `seq`: every later message on the key
        failed with it. Send `seq` alone; if refused alone, send its marker."""
        if marker:
            return self._stop("marker refused", err)
        self._inflight.clear()
        self._submitted = seq - 1
        self._outbox.publisher.resume(self._key)
        if seq in self._cache and not err.alone:
            future = self._send(self._cache[seq], False)
            try:
                self._wait(future)
            except PublishRefused:
                pass
            except FutureTimeout:
                return self._stop("publish timeout", None)
            except Exception as failure:  # noqa: BLE001
                return self._stop("publish failed", failure)
            else:
                self._acked, self._submitted = seq, seq
                self._cache.pop(seq, None)
                self.published += 1
                self._outbox.publisher.resume(self._key)
                return None
            self._outbox.publisher.resume(self._key)
        self._marked(seq, err)
        return None

    def _marked(self, seq: int, err: PublishRefused) -> None:
        logs.log("WARNING", "message refused, marker published instead",
                 subscription=self._key, seq=seq, error=_describe(err))
        self._markers.add(seq)


class OutboxSweeper:
    """The renewer's repair: a publishing run for subscriptions whose entries
    stayed unpublished longer than `grace` with no run holding the lease."""

    def __init__(self, store: OutboxStore, queue: TaskQueue, grace: timedelta) -> None:
        self._store = store
        self._queue = queue
        self._grace = grace

    def sweep(self, now: datetime, batch: int, max_reads: int) -> tuple[int, bool, list[str]]:
        """(runs enqueued, more may be due, errors)."""
        before = now - self._grace
        bucket = int(now.timestamp() // max(self._grace.total_seconds(), 1))
        enqueued, reads, after = 0, 0, None
        errors: list[str] = []
        while reads < max_reads:
            rows = self._store.pending_outboxes(before, batch, after)
            reads += len(rows)
            for sub_id, state in rows:
                if enqueued >= batch:
                    return enqueued, True, errors
                lease_until = state.get("lease_until")
                if lease_until is not None and lease_until > now:
                    continue  # the run holding it publishes
                try:
                    self._queue.enqueue_sync(sub_id, int(state.get("change_seq") or 0),
                                             origin=f"outbox{bucket}")
                    enqueued += 1
                except CalsyncError as err:
                    errors.append(f"{sub_id}: {type(err).__name__}")
            if len(rows) < batch:
                return enqueued, False, errors
            after = rows[-1][1]["_path"]
        return enqueued, True, errors


def _describe(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
