"""Delivery: publish every committed change entry to Pub/Sub through an outbox.

DESIGN.md, "Delivery (outbox)" and "Bounded publishing". `state/writer.published_seq`
is the last seq Pub/Sub acknowledged; every commit that adds entries sets
`publish_pending_since`. Only the run holding the lease publishes
`published_seq+1 .. change_seq`, on a thread of its own beside the sync (the sync
thread only hands over what each page commit wrote), and its progress rides on
the run's next fenced commit: no transaction of its own.

Bounded: a run keeps at most `max_messages` / `max_bytes` unacknowledged (the
process at most `PROCESS_WINDOWS` such windows, leftovers of earlier runs
included), and its publishing work (reading, building, submitting, waiting) is
charged to `CALSYNC_PUBLISH_TIMEOUT_SECONDS`; the sync waits for it at most what
is left of that budget. A transient failure is retried (a bounded number of
times, with backoff); a message Pub/Sub would refuse becomes its marker before
it is sent; entries past retention are skipped. What is left goes to the next
run, a continuation task (the run made progress) or the renewer's sweep. The
feed stays the source of truth; delivery is at least once, in seq order per
subscription (ordering key = id).

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

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions import logs
from functions.delivery.messages import marker_for, message_for, message_size, problem
from functions.delivery.sweep import OutboxSweeper
from functions.errors import LeaseLost, PublishRefused
from functions.model import Lease
from functions.ports import OutboxStore, OutMessage, Publisher, PublishProgress

__all__ = ["Outbox", "OutboxSweeper", "PublishLimits", "RunPublishing"]

PROCESS_WINDOWS = 2  # windows the process may hold unacknowledged (see the docstring)
MAX_ATTEMPTS = 5  # transient publish failures a run retries before leaving the rest


@dataclass(frozen=True)
class PublishLimits:
    """How much one run may publish: time, what is in flight, retries (settings)."""

    timeout: float = 10.0  # publishing work per run, seconds
    max_messages: int = 1000  # unacknowledged messages per run
    max_bytes: int = 10 * 1024 * 1024  # unacknowledged bytes per run
    retry_backoff: float = 0.2  # first pause after a transient failure; doubles


class _Window:
    """What the whole process has submitted and Pub/Sub not yet answered: runs
    that ended (timed out) leave theirs here until the client lets go of them.

    Counted per submitted batch, freed when its last message is answered: one
    ordering key's messages are answered in order, so by then all of them are."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._lock = threading.Lock()
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self.messages = self.bytes = 0
        self._listeners: set[Callable[[], None]] = set()

    def room(self) -> tuple[int, int]:
        """(messages, bytes) that may still be submitted."""
        with self._lock:
            return self.max_messages - self.messages, self.max_bytes - self.bytes

    def take(self, count: int, size: int, last: Future[str]) -> None:
        with self._lock:
            self.messages += count
            self.bytes += size
        last.add_done_callback(lambda _: self._give(count, size))

    def _give(self, count: int, size: int) -> None:
        with self._lock:
            self.messages -= count
            self.bytes -= size
            listeners = list(self._listeners)
        for wake in listeners:
            wake()

    def listen(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.add(wake)

    def forget(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.discard(wake)


class Outbox:
    """Publishing for sync runs: `start(lease)` gives one run's publisher."""

    def __init__(self, store: OutboxStore, publisher: Publisher, project: str,
                 timeout: float = 10.0, *, limits: PublishLimits | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.publisher = publisher
        self.project = project
        self.limits = limits or PublishLimits(timeout=timeout)
        self.timeout = self.limits.timeout
        self.clock = clock  # for retention: an entry whose `expire_at` passed is gone
        self.window = _Window(PROCESS_WINDOWS * self.limits.max_messages,
                              PROCESS_WINDOWS * self.limits.max_bytes)

    def start(self, lease: Lease) -> RunPublishing:
        return RunPublishing(self, lease)


@dataclass
class _Sent:
    """A submitted message (or an entry passed over: `size` 0, `future` None), in
    seq order."""

    seq: int
    doc: dict[str, Any] | None
    future: Future[str] | None
    marker: bool = False
    size: int = 0
    message: OutMessage | None = None


class RunPublishing:
    """One run's publishing, on a thread of its own. No method raises: failures
    are logged and left to the next run, a continuation or the sweep."""

    def __init__(self, outbox: Outbox, lease: Lease,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._outbox = outbox
        self._limits = outbox.limits
        self._lease = lease
        self._key = lease.subscription.id
        self._monotonic = monotonic
        self._cond = threading.Condition()
        # -- shared with the sync thread (under `_cond`) --
        self._handed: dict[int, dict[str, Any]] = {}  # committed, not yet submitted
        self._known_seq = 0  # the highest seq known committed
        self._commits = 0  # fenced commits since the start: each proves the lease
        self._reread = False  # a commit handed nothing over: read the position again
        self._finishing = False
        self._stopped = False
        self._submitting = False
        self._thread: threading.Thread | None = None
        self._spent = 0.0  # publishing work charged to the budget, seconds
        self._started_seq: int | None = None  # `published_seq` when the run began
        self._acked: int | None = None  # every seq up to here acknowledged or skipped
        self._head_at: datetime | None = None  # `at` of the first entry after `_acked`
        self._recorded: int | None = None  # what a fenced write already recorded
        self._stall_recorded = False
        self._tried = False  # something was submitted or waited for
        self.stopped_because: str | None = None
        self.published = 0  # messages acknowledged in this run
        self.skipped = 0  # entries past retention (or already gone) passed over
        # -- the publishing thread's own --
        self._inflight: deque[_Sent] = deque()
        self._inflight_bytes = 0
        self._next = 0
        self._ahead: dict[int, dict[str, Any]] = {}  # read from the store, not yet sent
        self._read_upto = 0  # every seq up to here was read from the store (or handed)
        self._markers: set[int] = set()
        self._solo: int | None = None  # sent alone after a batch refusal
        self._failures = 0
        self._checked_commits = -1
        self._since_check = 0
        self._action_started = 0.0
        self._watched: _Sent | None = None
        self._now = outbox.clock()  # retention is judged once per run

    # -- what the sync thread calls ---------------------------------------------

    def committed(self, entries: Iterable[dict[str, Any]] | None) -> None:
        """After a page commit: hand over what it wrote (submitted off this thread)."""
        with self._cond:
            if self._stopped:
                return
            self._commits += 1
            if entries is None:
                self._reread = True
            for doc in entries or ():
                seq = int(doc["seq"])
                self._known_seq = max(self._known_seq, seq)
                # Bounded: a backlog beyond two windows is read back from the store.
                if len(self._handed) < 2 * self._limits.max_messages:
                    self._handed[seq] = doc
            self._cond.notify_all()
        self._ensure_thread()

    def progress(self) -> PublishProgress | None:
        """What is acknowledged and not yet recorded (for the next fenced commit)."""
        with self._cond:
            if self._acked is None or self._acked <= max(self._recorded or 0,
                                                          self._started_seq or 0):
                return None
            return PublishProgress(self._acked, self._head_at)

    def recorded(self, progress: PublishProgress | None) -> None:
        """A fenced write recorded `progress`."""
        if progress is None:
            return
        with self._cond:
            self._recorded = max(self._recorded or 0, progress.published_seq)
            self._stall_recorded = self._stall_recorded or progress.stalled

    def finish(self) -> PublishProgress | None:
        """No more commits: publish the rest, waiting at most what is left of the
        budget; then stop. The progress to record (None: nothing to record)."""
        with self._cond:
            self._finishing = True
            self._cond.notify_all()
        self._ensure_thread()
        thread = self._thread
        if thread is not None:
            with self._cond:
                remaining = self._limits.timeout - self._spent
            thread.join(max(remaining, 0.0))
        return self.close("publish timeout")

    def close(self, why: str = "run ended") -> PublishProgress | None:
        """Stop at once (no more submissions after this returns); the progress not
        yet recorded, `stalled` when the run got nothing acknowledged."""
        with self._cond:
            if not self._stopped:
                busy = self._thread is not None and self._thread.is_alive()
                self._stop_locked(why if busy else None)
            while self._submitting:
                self._cond.wait()
            backlog = self._acked is not None and self._acked < self._known_seq
            stalled = (self._tried and backlog and not self.published and not self.skipped
                       and not self._stall_recorded)
            moved = self._acked is not None and self._acked > max(self._recorded or 0,
                                                                   self._started_seq or 0)
            if not moved and not stalled:
                return None
            assert self._acked is not None
            return PublishProgress(self._acked, self._head_at, stalled=stalled)

    def continues(self) -> bool:
        """Entries remain and this run made progress: worth a continuation task."""
        with self._cond:
            return (self._acked is not None and self._acked < self._known_seq
                    and bool(self.published or self.skipped))

    @property
    def acked(self) -> int | None:
        return self._acked

    @property
    def stopped(self) -> bool:
        return self._stopped

    # -- the publishing thread ------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._main, daemon=True,
                                            name=f"publish-{self._key[:12]}")
            self._outbox.window.listen(self._wake)
        self._thread.start()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _main(self) -> None:
        try:
            if self._begin():
                while self._await_work():
                    self._action_started = self._monotonic()
                    try:
                        self._harvest()
                        self._fill()
                    finally:
                        self._charge(self._monotonic() - self._action_started)
        except LeaseLost as err:
            self._halt("lease lost", err)
        except Exception as err:  # noqa: BLE001 - a publish never fails the sync
            self._halt("publish failed", err)
        finally:
            self._outbox.window.forget(self._wake)
            if self.skipped:
                logs.log("WARNING", "publish skipped entries past retention",
                         subscription=self._key, skipped=self.skipped)
            with self._cond:
                self._cond.notify_all()

    def _charge(self, seconds: float) -> None:
        with self._cond:
            self._spent += seconds

    def _begin(self) -> bool:
        """Where the outbox stands, and whether this run still holds the lease: a
        run fenced out before it publishes publishes nothing."""
        started = self._monotonic()
        position = self._outbox.store.outbox_position(self._key)
        self._charge(self._monotonic() - started)
        if position.lease_generation != self._lease.generation:
            raise LeaseLost(f"lease generation {self._lease.generation} of {self._key} was "
                            f"taken over (now {position.lease_generation})")
        if position.published_seq is None:
            with self._cond:
                self._stopped = True  # the outbox starts with the next commit
            return False
        # After a failure the client refuses the key until it is resumed.
        self._outbox.publisher.resume(self._key)
        with self._cond:
            self._started_seq = self._acked = position.published_seq
            self._known_seq = max(self._known_seq, position.change_seq)
            self._checked_commits = self._commits
        self._next = position.published_seq + 1
        return True

    def _await_work(self) -> bool:
        """Block until there is something to do (False: done or stopped). Idle
        waiting for a commit is free; waiting for Pub/Sub is charged."""
        with self._cond:
            while True:
                if self._stopped:
                    return False
                if self._spent >= self._limits.timeout:
                    self._stop_locked("publish timeout")
                    return False
                head = self._inflight[0] if self._inflight else None
                if head is not None and (head.future is None or head.future.done()):
                    return True
                if self._reread or (self._next <= self._known_seq and self._room()[0] > 0):
                    return True
                if head is None and self._next > self._known_seq:
                    if self._finishing:
                        return False  # caught up
                    self._cond.wait()
                    continue
                self._tried = True
                if head is not None and head.future is not None and head is not self._watched:
                    # Woken when the oldest message is answered (they are answered
                    # in order), not by every message.
                    self._watched = head
                    head.future.add_done_callback(self._woken)
                started = self._monotonic()
                self._cond.wait(self._limits.timeout - self._spent)
                self._spent += self._monotonic() - started

    def _woken(self, _: Future[str]) -> None:
        self._wake()

    def _room(self) -> tuple[int, int]:
        """(messages, bytes) this run may submit now: its own window and the
        process's, whichever is smaller; one message may always go alone."""
        if self._solo is not None and self._inflight:
            return 0, 0  # a message sent alone is answered first
        messages, size = self._outbox.window.room()
        messages = min(messages, self._limits.max_messages - len(self._inflight))
        size = min(size, self._limits.max_bytes - self._inflight_bytes)
        if messages <= 0 and not self._inflight and self._outbox.window.messages == 0:
            return 1, 0
        return messages, size

    def _fill(self) -> None:
        """Submit what is committed, as far as the windows allow, as one batch."""
        with self._cond:
            reread, self._reread = self._reread, False
            commits = self._commits
        if reread or (commits == self._checked_commits
                      and self._since_check >= self._limits.max_messages):
            self._check_lease()
        with self._cond:
            if self._stopped:
                return
            room, room_bytes = self._room()
            known = self._known_seq
            self._submitting = True
        try:
            batch = self._plan(room, room_bytes, known)
            sent = [item for item in batch if item.message is not None]
            futures = (self._outbox.publisher.submit_batch(
                self._key, [item.message for item in sent if item.message is not None])
                if sent and not self._stopped else [])
            self._take(batch, sent, futures)
        finally:
            with self._cond:
                self._submitting = False
                self._cond.notify_all()

    def _plan(self, room: int, room_bytes: int, known: int) -> list[_Sent]:
        """The next entries in seq order: messages (built, checked) and skipped ones."""
        batch: list[_Sent] = []
        count = size = 0
        while (count < room and self._next <= known and not self._stopped
               and self._spent + self._monotonic() - self._action_started
               < self._limits.timeout):
            self._tried = True
            seq = self._next
            doc = self._doc(seq)
            if doc is None or self._expired(doc):
                # Past retention (or already deleted by TTL): not published, and
                # `published_seq` moves past it (the consumer's gap read gets 410).
                batch.append(_Sent(seq, doc, None))
                self._next += 1
                continue
            message, marker = self._message(doc, seq in self._markers)
            weight = message_size(message)
            if size + weight > room_bytes and (count or self._inflight):
                self._ahead[seq] = doc  # the window is full
                break
            batch.append(_Sent(seq, doc, None, marker, weight, message))
            count, size = count + 1, size + weight
            self._next += 1
            if self._solo is not None:
                break  # alone: answered before anything else goes
        return batch

    def _take(self, batch: list[_Sent], sent: list[_Sent], futures: list[Future[str]]) -> None:
        """Put the batch in flight, in seq order, up to a message refused before it
        left: that one goes again as its marker, with everything after it."""
        answers = dict(zip((item.seq for item in sent), futures, strict=False))
        count, size, last = 0, 0, None
        for index, item in enumerate(batch):
            if item.message is not None:
                future = answers.get(item.seq)
                refused = (future.exception() if future is not None and future.done()
                           else None)
                if future is None or (not item.marker and isinstance(refused, PublishRefused)
                                      and refused.alone):
                    if isinstance(refused, PublishRefused):
                        self._marked(item.seq, refused)
                    for later in batch[index:]:
                        if later.doc is not None:
                            self._ahead[later.seq] = later.doc
                    self._next = item.seq
                    break
                item.future = future
                count, size, last = count + 1, size + item.size, future
                self._since_check += 1
            self._inflight.append(item)
            self._inflight_bytes += item.size
        if last is not None:
            self._outbox.window.take(count, size, last)

    def _check_lease(self) -> None:
        position = self._outbox.store.outbox_position(self._key)
        if position.lease_generation != self._lease.generation:
            raise LeaseLost(f"lease generation {self._lease.generation} of {self._key} was "
                            f"taken over (now {position.lease_generation})")
        with self._cond:
            self._known_seq = max(self._known_seq, position.change_seq)
            self._checked_commits = self._commits
        self._since_check = 0

    def _doc(self, seq: int) -> dict[str, Any] | None:
        """Entry `seq`: handed over by a commit, or read from the store a chunk at a
        time (at most a window's worth held). None: not there (deleted by TTL)."""
        with self._cond:
            doc = self._handed.pop(seq, None)
            upto = self._known_seq
        if doc is None:
            doc = self._ahead.pop(seq, None)
        if doc is None and seq > self._read_upto:
            upto = min(upto, seq - 1 + self._limits.max_messages)
            found = self._outbox.store.read_entries(self._key, seq - 1, upto)
            with self._cond:
                # A commit may have handed some of these over while they were
                # read: one copy of each is kept, here (a copy left among the
                # handed ones would leave `seq` itself found nowhere: skipped).
                for entry in found:
                    number = int(entry["seq"])
                    self._ahead[number] = self._handed.pop(number, entry)
            self._read_upto = upto
            doc = self._ahead.pop(seq, None)
        return doc

    def _expired(self, doc: dict[str, Any]) -> bool:
        expire_at = doc.get("expire_at")
        return isinstance(expire_at, datetime) and expire_at <= self._now

    def _message(self, doc: dict[str, Any], marker: bool) -> tuple[OutMessage, bool]:
        sub, project = self._lease.subscription, self._outbox.project
        if not marker:
            message = message_for(doc, sub, project, self._lease.complete_as_of)
            why = problem(message, self._key)
            if why is None:
                return message, False
            self._marked(int(doc["seq"]), why)
        return marker_for(doc, sub, project, self._lease.complete_as_of), True

    def _harvest(self) -> None:
        """Count acknowledgements in seq order; handle the first failure."""
        acked, published, skipped = None, 0, 0
        failed: tuple[_Sent, BaseException] | None = None
        while self._inflight:
            head = self._inflight[0]
            if head.future is not None:
                if not head.future.done():
                    break
                err = head.future.exception()
                if err is not None:
                    failed = (head, err)
                    break
            self._inflight.popleft()
            self._inflight_bytes -= head.size
            if self._solo == head.seq:
                self._solo = None
            acked = head.seq
            if head.future is None:
                skipped += 1
            else:
                published += 1
        if acked is not None:
            with self._cond:
                following = self._inflight[0].doc if self._inflight else (
                    self._handed.get(acked + 1) or self._ahead.get(acked + 1))
                self._acked = acked
                self._head_at = following.get("at") if following else None
                self.published += published
                self.skipped += skipped
        if failed is not None:
            head, err = failed
            if isinstance(err, PublishRefused):
                self._refused(head, err)
            else:
                self._failed(head, err)

    def _refused(self, head: _Sent, err: PublishRefused) -> None:
        """Pub/Sub refused the batch holding `head` (every later message on the key
        failed with it): send `head` alone; refused alone, send its marker."""
        if head.marker:
            return self._halt("marker refused", err)
        if err.alone or self._solo == head.seq:
            self._marked(head.seq, err)
            self._solo = None
        else:
            self._solo = head.seq
        self._rewind()
        return None

    def _failed(self, head: _Sent, err: BaseException) -> None:
        """A transient failure (the service, the network, a deadline): retried a
        bounded number of times, after a pause charged to the budget."""
        self._failures += 1
        logs.log("WARNING", "publish failed, retrying" if self._failures < MAX_ATTEMPTS
                 else "publish failed", subscription=self._key, seq=head.seq,
                 attempt=self._failures, error=_describe(err))
        if self._failures >= MAX_ATTEMPTS:
            return self._halt("publish failed", err)
        self._rewind()
        pause = self._limits.retry_backoff * 2 ** (self._failures - 1)
        with self._cond:
            pause = min(pause, max(self._limits.timeout - self._spent, 0.0))
            deadline = self._monotonic() + pause
            while not self._stopped and self._monotonic() < deadline:
                self._cond.wait(deadline - self._monotonic())
        return None

    def _rewind(self) -> None:
        """Start again after the last acknowledged seq: the client paused the key and
        failed everything queued behind the failure."""
        self._outbox.publisher.resume(self._key)
        for sent in self._inflight:
            if sent.doc is not None:
                self._ahead[sent.seq] = sent.doc
        if self._inflight:
            self._next = self._inflight[0].seq
        self._inflight.clear()
        self._inflight_bytes = 0

    def _marked(self, seq: int, why: BaseException | str) -> None:
        logs.log("WARNING", "message refused, marker published instead",
                 subscription=self._key, seq=seq,
                 error=why if isinstance(why, str) else _describe(why))
        self._markers.add(seq)

    def _halt(self, why: str, err: BaseException | None) -> None:
        with self._cond:
            self._stop_locked(why, err)

    def _stop_locked(self, why: str | None, err: BaseException | None = None) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._cond.notify_all()
        if why is None:
            return
        self.stopped_because = why
        logs.log("WARNING", "publish deferred", subscription=self._key, outcome=why,
                 published_seq=self._acked, error=_describe(err) if err else None)


def _describe(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
