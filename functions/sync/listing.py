"""One pass of a sync run: list, diff and commit every page, then (a full pass over a
store that already held snapshots) reconcile deletions.

Bounded memory, whatever the calendar's size:
- the next page is fetched while the current one is diffed and committed (one page
  in flight, `_Pages`), and a page's commits go out on a thread of their own while
  the next one is encoded (one commit in flight, one waiting: `_Committer`);
- a full pass that must reconcile holds no set of the ids it listed: it stamps each
  live event it lists with the pass's mark (`_listed`) and afterwards looks for live
  snapshots without it (`SyncStore.iter_unlisted_ids`, one batch at a time);
- a first sync (an empty store) remembers what it wrote in a fixed-size filter
  (`SeenIds`), so it reads a snapshot back only for an id it may have written.

Bounded time: with a deadline, a pass stops after the page (or reconciliation
batch) during which the deadline passed, its `ListingProgress` saved with its last
commit, and `continued` is set: the caller queues a follow-up task, whose run goes
on from the saved page token, never from the top. DESIGN.md: the next sync token
is still committed only by the final commit, after every page's data.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from functions.errors import (
    CalendarRequestRejected,
    CalendarUnavailable,
    CalsyncError,
    SyncTokenInvalid,
)
from functions.model import (
    CHANGE_KINDS,
    LISTED,
    RESYNC_REQUIRED,
    Event,
    EventPage,
    EventWrite,
    Lease,
    LifecycleDraft,
    ListingProgress,
)
from functions.ports import CalendarPort, PublishProgress, SyncStore
from functions.sync.plan import deleted_series_ids, is_live, plan_page, plan_reconciliation

if TYPE_CHECKING:
    from functions.delivery.outbox import Outbox, RunPublishing

Clock = Callable[[], datetime]

# Firestore allows 500 writes per transaction; one goes to state/writer.
MAX_TRANSACTION_WRITES = 500
# Bytes per commit request: production refuses over 10 MiB, the emulator over
# 4 MiB (its gRPC message cap). Estimated by the store (`SyncStore.write_bytes`).
MAX_COMMIT_BYTES = 3 * 1024 * 1024
_COMMIT_OVERHEAD = 4096  # the state/writer update, the pass's progress, framing
RECONCILE_BATCH = 1000
# The first-sync filter: 2**23 bits (1 MiB) and three probes. At 100,000 ids about
# one id in 25,000 is read back for nothing; at 1,000,000, one in 40.
_SEEN_BITS = 1 << 23


class PassSettings(Protocol):
    """What a pass reads of the run's settings (`engine.SyncSettings`)."""

    @property
    def page_size(self) -> int: ...
    @property
    def lease_seconds(self) -> float: ...
    @property
    def max_transaction_writes(self) -> int: ...
    @property
    def max_commit_bytes(self) -> int: ...
    @property
    def reconcile_batch(self) -> int | None: ...


@dataclass
class RunProgress:
    """What a run did so far: everything its log line counts."""

    mode: str | None = None
    pages: int = 0
    items: int = 0
    reconciled: int = 0
    entries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANGE_KINDS, 0))
    published: int = 0
    resumed: bool = False  # the run went on with a pass an earlier run began


class SeenIds:
    """The ids a first sync wrote in this run, as a Bloom filter of fixed size: "not
    seen" is certain (that snapshot cannot exist: nothing is read), "seen" may be
    wrong (the snapshot is read, which is always correct)."""

    def __init__(self, bits: int = _SEEN_BITS) -> None:
        self._bits = bytearray(bits // 8)
        self._size = bits

    def _probes(self, key: str) -> tuple[int, int, int]:
        h = hash(key)
        step = (h >> 32) | 1
        return h % self._size, (h + step) % self._size, (h + 2 * step) % self._size

    def add(self, key: str) -> None:
        for bit in self._probes(key):
            self._bits[bit >> 3] |= 1 << (bit & 7)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return all(self._bits[bit >> 3] & (1 << (bit & 7)) for bit in self._probes(key))


class _Pages:
    """The pages of one listing, the next one fetched (on a thread of its own) while
    the caller works on the current one, as long as `more` says there is time."""

    def __init__(self, fetch: Callable[[str | None], EventPage], page_token: str | None,
                 more: Callable[[], bool]) -> None:
        self._fetch, self._page_token, self._more = fetch, page_token, more
        self._pool: ThreadPoolExecutor | None = None
        self.stopped_at: str | None = None  # the page left for a follow-up (out of time)

    def __iter__(self) -> Iterator[EventPage]:
        ahead: Future[EventPage] | None = None
        token = self._page_token
        try:
            page = self._fetch(token)
            while True:
                token = page.next_page_token
                if token and self._more():
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(1, thread_name_prefix="calsync-list")
                    ahead = self._pool.submit(self._fetch, token)
                elif token:
                    self.stopped_at = token
                yield page
                if ahead is None:
                    return
                page, ahead = ahead.result(), None
        finally:
            if ahead is not None:
                ahead.cancel()
            if self._pool is not None:
                self._pool.shutdown(wait=True)  # a fetch under way ends; its page is dropped


class _Committer:
    """Commits in order on a thread of its own, one at a time, so that the run encodes
    the next commit while the previous one is on the wire: one in flight, one
    waiting. Reading a snapshot that a commit in flight writes waits for it."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._flight: Future[int | None] | None = None
        self._writing: set[str] = set()
        self._expected: int | None = None

    def submit(self, commit: Callable[[], int | None], ids: set[str],
               expected: int | None) -> int:
        """Send `commit` once the previous one is in; returns how far that one's `seq`
        ended from where it was expected to (0 when as expected or not known)."""
        shift = self.wait()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="calsync-commit")
        self._writing = ids
        self._expected = expected + shift if expected is not None else None
        self._flight = self._pool.submit(commit)
        return shift

    def wait(self) -> int:
        """The commit in flight is in (its failure is raised here)."""
        flight, self._flight = self._flight, None
        if flight is None:
            return 0
        expected, self._expected, self._writing = self._expected, None, set()
        last = flight.result()
        return last - expected if last is not None and expected is not None else 0

    def settle(self, ids: set[str]) -> int:
        """Wait for the commit in flight if it writes any of `ids`."""
        return self.wait() if self._writing & ids else 0

    def close(self) -> None:
        """However the pass ended: nothing is left on the wire after this."""
        with contextlib.suppress(BaseException):
            self.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class SyncPass:
    """The state of one leased run: which pages are done, when the lease ends."""

    def __init__(self, store: SyncStore, calendar: CalendarPort, settings: PassSettings,
                 clock: Clock, outbox: Outbox | None, lease: Lease, progress: RunProgress,
                 deadline: float | None = None) -> None:
        self.store, self.calendar, self.settings, self.clock = store, calendar, settings, clock
        self.lease = lease
        self.progress = progress
        self.deadline = deadline  # time.monotonic() after which no new page is begun
        self.lease_until = lease.until
        self._outbox = outbox
        self.publishing: RunPublishing | None = (
            outbox.start(lease) if outbox is not None else None)
        self.continued = False  # out of time: the pass goes on in a follow-up task
        self._committer = _Committer()
        self._seq = lease.change_seq  # `change_seq` after the commits sent so far
        self._saved: ListingProgress | None = lease.resume  # what state/writer holds
        # When the listing that completed began (a 410 starts a new one; a resumed
        # pass began in an earlier run): the watermark the final commit stores
        # (DESIGN.md, "complete_as_of"). None: the watermark stays where it is.
        self.listing_started: datetime | None = None

    def lifecycle_events(self) -> list[LifecycleDraft]:
        """What the final commit tells consumers: a full listing replaced the
        incremental one after a 410 (`resync_required`: they may bootstrap again).
        Written by the final commit only, so a run that dies and is retried (the
        retry meets the 410 again) or a pass that goes on in a follow-up task says
        it once."""
        if self.progress.mode != "full_after_410":
            return []
        return [LifecycleDraft(RESYNC_REQUIRED, {"reason": "sync_token_expired"})]

    # -- publishing ----------------------------------------------------------------

    def finish_publishing(self) -> PublishProgress | None:
        """Publish the rest within the budget; the progress to record."""
        if self.publishing is None:
            return None
        done = self.publishing.finish()
        self.progress.published = self.publishing.published
        return done

    def recorded(self, publish: PublishProgress | None) -> None:
        if self.publishing is not None:
            self.publishing.recorded(publish)

    def settle_publishing(self) -> None:
        """However the run ended: stop publishing, and record what is acknowledged
        but not yet recorded (no commit carries it now), else the next run would
        publish it again, and again if every run fails the same way."""
        if self.publishing is None or self._outbox is None:
            return
        done = self.publishing.close()
        self.progress.published = self.publishing.published
        if done is not None:
            with contextlib.suppress(CalsyncError):
                self._outbox.store.advance_published(self.lease, done, self.clock())

    # -- the pass ------------------------------------------------------------------

    def sync(self) -> str | None:
        """List, diff and commit every page; the next sync token, or None when the
        run is out of time and the pass goes on in a follow-up task (`continued`)."""
        try:
            return self._sync()
        finally:
            self._committer.close()

    def _sync(self) -> str | None:
        lease = self.lease
        resume = lease.resume
        if resume is not None and resume.sync_token is not None and (
                lease.full_resync != resume.full_resync):
            resume = None  # a full resync was asked for since the incremental pass began
        if resume is not None:
            # The listing began in an earlier run: it serves the requests recorded
            # before it began, not those claimed since (see `_catch_up`). An
            # incremental pass is never a first sync (its full listing committed, or
            # this is a catch-up after one).
            self.lease = replace(lease, claimed_gen=min(lease.claimed_gen, resume.claimed_gen),
                                 full_resync=resume.full_resync,
                                 first_sync=lease.first_sync and resume.sync_token is None)
            self.progress.mode, self.progress.resumed = resume.mode, True
            try:
                token = self._pass(resume, resumed=True)
            except _SavedPageRefused:
                self._saved = None  # start again from the top, once
                # Listed again from now on: after every request this run claimed.
                self.lease = replace(self.lease, claimed_gen=lease.claimed_gen,
                                     first_sync=lease.first_sync)
                if resume.sync_token is None:
                    return self._pass(self._full(resume.mode))
                self.progress.mode = None
            else:
                return self._catch_up(token, lease)
        if self.lease.sync_token is not None:
            self.progress.mode = "incremental"
            return self._incremental(self.lease.sync_token)
        self.progress.mode = self.progress.mode or "full"
        return self._pass(self._full(self.progress.mode))

    def _incremental(self, sync_token: str) -> str | None:
        try:
            return self._pass(self._new("incremental", sync_token))
        except SyncTokenInvalid:
            self.progress.mode = "full_after_410"
        return self._pass(self._full("full_after_410"))

    def _catch_up(self, token: str | None, lease: Lease) -> str | None:
        """A resumed pass is done, but this run claimed requests recorded after it
        began listing (the one of this very task, when it is the retry of a run that
        crashed): their changes may be missing from what it listed. The webhook wrote
        nothing for notifications that found such a request pending ("the run that
        claims it has not listed yet"), so this run lists what changed since the
        pass's token before it commits: an answer of `synced` serves every request
        the run claimed. Out of time, or with a newer full resync asked for, the
        request is left to the follow-up task `commit_final` queues."""
        if (token is None or lease.claimed_gen <= self.lease.claimed_gen
                or lease.full_resync != self.lease.full_resync or not self._has_time()):
            return token
        self._seq += self._committer.wait()  # the pass's last commits are in
        self.lease = replace(self.lease, claimed_gen=lease.claimed_gen, first_sync=False)
        return self._incremental(token)

    def _new(self, mode: str, sync_token: str | None, fresh: bool = False,
             mark: int = 0) -> ListingProgress:
        # Before the first request: every change Google applied before this instant
        # is in the listing (or already in the feed).
        return ListingProgress(sync_token=sync_token, page_token=None, mode=mode,
                               claimed_gen=self.lease.claimed_gen,
                               full_resync=self.lease.full_resync, fresh=fresh, mark=mark,
                               started_at=self.clock())

    def _full(self, mode: str) -> ListingProgress:
        # A full pass over an empty store needs no reconciliation (only this pass
        # can have written what will be there) and no snapshot reads; otherwise it
        # marks what it lists with its lease generation, unique to it.
        fresh = not self.store.has_events(self.lease.subscription.id)
        return self._new(mode, None, fresh=fresh, mark=0 if fresh else self.lease.generation)

    def _pass(self, state: ListingProgress, resumed: bool = False) -> str | None:
        if state.next_sync_token is None:
            listed = self._list(state, resumed)
            if listed is None:
                return None
            state = listed
        token = state.next_sync_token
        if token is None:  # pragma: no cover - `_list` returns it set
            raise CalendarUnavailable("events.list ended without a nextSyncToken")
        if state.mark and not self._reconcile(state):
            return None
        self._committer.wait()
        self.listing_started = state.started_at
        return token

    def _list(self, state: ListingProgress, resumed: bool) -> ListingProgress | None:
        # Fresh from the first page in this run: what it wrote, it remembers.
        seen = SeenIds() if state.fresh and state.page_token is None else None
        first = [resumed and state.page_token is not None]

        def fetch(page_token: str | None) -> EventPage:
            try:
                return self.calendar.list_page(self.lease.subscription,
                                               sync_token=state.sync_token,
                                               page_token=page_token,
                                               page_size=self.settings.page_size)
            except (SyncTokenInvalid, CalendarRequestRejected) as err:
                if first[0]:  # the saved page token itself is refused (expired)
                    raise _SavedPageRefused(str(err)) from err
                raise
            finally:
                first[0] = False

        pages = _Pages(fetch, state.page_token, self._has_time)
        for page in pages:
            self.progress.pages += 1
            self.progress.items += len(page.items)
            writes, ids = self._plan(page.items, state.mark, seen)
            if page.next_page_token:
                state = replace(state, page_token=page.next_page_token)
            elif page.next_sync_token is None:
                raise CalendarUnavailable("events.list ended without a nextSyncToken")
            else:
                state = replace(state, page_token=None, next_sync_token=page.next_sync_token)
            # Saved with the page's data when it has some; a pass that reconciles
            # saves the end of its listing too.
            keep = page.next_page_token is not None or bool(state.mark)
            self._commit(writes, state if keep else None, ids)
            if seen is not None:
                for event_id in ids:
                    seen.add(event_id)
        if pages.stopped_at is not None:
            self._stop(state)
            return None
        return state

    def _plan(self, items: Sequence[Event], mark: int,
              seen: SeenIds | None) -> tuple[list[EventWrite], set[str]]:
        sub_id = self.lease.subscription.id
        ids = list(dict.fromkeys(item["id"] for item in items))
        to_read = ids if seen is None else [i for i in ids if i in seen]
        self._seq += self._committer.settle(set(to_read))
        stored = self.store.load_snapshots(sub_id, to_read) if to_read else {}
        stored.update((i, None) for i in ids if i not in stored)
        series = deleted_series_ids(items, stored)
        if series:
            self._seq += self._committer.wait()  # its exceptions may be on the wire
        exceptions = {s: self.store.load_exception_ids(sub_id, s) for s in series}
        extra = {i for ids_ in exceptions.values() for i in ids_ if i not in stored}
        if extra:
            stored.update(self.store.load_snapshots(sub_id, extra))
        writes = plan_page(items, stored, exceptions, first_sync=self.lease.first_sync)
        if mark:
            writes = _marked(writes, ids, stored, mark)
        return writes, {w.event_id for w in writes}

    def _reconcile(self, state: ListingProgress) -> bool:
        """Live snapshots the pass did not list are deleted; False when out of time."""
        self._seq += self._committer.wait()  # every mark of the listing is in
        sub_id = self.lease.subscription.id
        batches = self.store.iter_unlisted_ids(sub_id, state.mark,
                                               self.settings.reconcile_batch
                                               or RECONCILE_BATCH,
                                               after=state.reconciled_after)
        for unlisted, last in batches:
            writes: list[EventWrite] = []
            if unlisted:
                stored = self.store.load_snapshots(sub_id, unlisted)
                writes = plan_reconciliation({k: v for k, v in stored.items() if v is not None})
            self.progress.reconciled += len(writes)
            state = replace(state, reconciled_after=last)
            self._commit(writes, state, {w.event_id for w in writes})
            if not self._has_time():
                self._stop(state)
                return False
        return True

    def _has_time(self) -> bool:
        return self.deadline is None or time.monotonic() < self.deadline

    def _stop(self, state: ListingProgress) -> None:
        """Out of time: make sure where the pass stands is saved, then let go."""
        self._seq += self._committer.wait()
        if self._saved != state:
            self._commit_now([], state)
        self.continued = True

    # -- commits -------------------------------------------------------------------

    def _commit(self, writes: Sequence[EventWrite], state: ListingProgress | None,
                ids: set[str]) -> None:
        """Send the writes in commits that fit, in order; `state` goes with the last."""
        span = timedelta(seconds=self.settings.lease_seconds)
        if not writes:
            now = self.clock()
            if self.lease_until - now < span / 2:
                self._seq += self._committer.wait()
                self.lease_until = now + span
                self.store.extend_lease(self.lease, self.lease_until)
            return
        sub_id = self.lease.subscription.id

        def fitting(part: Sequence[EventWrite]) -> list[Sequence[EventWrite]]:
            return list(_chunks(part, self.settings.max_transaction_writes - 1,
                                self.settings.max_commit_bytes - _COMMIT_OVERHEAD,
                                lambda write: self.store.write_bytes(sub_id, write)))

        # The feed's data first, then the marks of events listed unchanged (no entry).
        chunks = [(chunk, False) for chunk in fitting([w for w in writes if not w.listed_only])]
        chunks += [(chunk, True) for chunk in fitting([w for w in writes if w.listed_only])]
        for index, (chunk, marks) in enumerate(chunks):
            now = self.clock()
            self.lease_until = now + span
            saved = state if index == len(chunks) - 1 else None
            if saved is not None:
                self._saved = saved
            if marks:
                self._seq += self._committer.submit(
                    _bind(self._send_marks, chunk, now, self.lease_until, saved), ids, None)
                continue
            prepared = self.store.prepare_page(self.lease, chunk, now, self._seq)
            entries = sum(1 for write in chunk if write.change is not None)
            expected = self._seq + entries
            self._seq = expected + self._committer.submit(
                _bind(self._send, prepared, now, self.lease_until, saved), ids,
                expected if entries else None)

    def _commit_now(self, writes: Sequence[EventWrite], state: ListingProgress) -> None:
        now = self.clock()
        self.lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        self._saved = state
        self._send_marks(writes, now, self.lease_until, state)

    def _send_marks(self, writes: Sequence[EventWrite], now: datetime, until: datetime,
                    state: ListingProgress | None) -> None:
        """One commit of marks only (on the committer's thread): no entry, no `seq`."""
        extra: dict[str, Any] = {"progress": state} if state is not None else {}
        self.store.commit_marks(self.lease, writes, now, until, **extra)

    def _send(self, writes: Sequence[EventWrite], now: datetime, until: datetime,
              state: ListingProgress | None) -> int | None:
        """One commit (on the committer's thread); the last `seq` it wrote, if any."""
        publish = self.publishing.progress() if self.publishing is not None else None
        extra: dict[str, Any] = {"publish": publish} if publish is not None else {}
        if state is not None:
            extra["progress"] = state
        # Keyword arguments only when set: stores written before them may not take them.
        committed = self.store.commit_page(self.lease, writes, now, until, **extra)
        self.recorded(publish)
        for write in writes:
            if write.change is not None:
                self.progress.entries[write.change.kind] += 1
        if self.publishing is not None and any(w.change is not None for w in writes):
            self.publishing.committed(committed)  # submits; waits for nothing
        seqs = [int(entry["seq"]) for entry in committed or () if "seq" in entry]
        return max(seqs) if seqs else None


class _SavedPageRefused(Exception):
    """The page token a pass saved is refused (it expired): the pass starts again."""


def _bind(send: Callable[..., int | None], *args: Any) -> Callable[[], int | None]:
    return lambda: send(*args)


def _marked(writes: list[EventWrite], ids: Sequence[str], stored: dict[str, Any],
            mark: int) -> list[EventWrite]:
    """The page's writes stamped with the pass's mark, and a mark-only write for each
    live event listed unchanged (unless a replayed page marked it already)."""
    marked = [replace(w, snapshot={**w.snapshot, LISTED: mark}) for w in writes]
    written = {w.event_id for w in writes}
    for event_id in ids:
        snapshot = stored.get(event_id)
        if (event_id not in written and is_live(snapshot) and snapshot is not None
                and snapshot.get(LISTED) != mark):
            marked.append(EventWrite(event_id, {**snapshot, LISTED: mark}, listed_only=True))
    return marked


def _chunks(
    writes: Sequence[EventWrite],
    limit: int,
    max_bytes: int | None = None,
    size: Callable[[EventWrite], int] | None = None,
) -> Iterator[Sequence[EventWrite]]:
    """Consecutive runs of `writes` of at most `limit` document writes and (when
    `size` is given) at most `max_bytes`; a write over `max_bytes` on its own."""
    start, used, weight = 0, 0, 0
    for index, write in enumerate(writes):
        bytes_ = size(write) if size is not None else 0
        over = max_bytes is not None and weight + bytes_ > max_bytes
        if index > start and (used + write.write_count > limit or over):
            yield writes[start:index]
            start, used, weight = index, 0, 0
        used += write.write_count
        weight += bytes_
    if start < len(writes):
        yield writes[start:]
