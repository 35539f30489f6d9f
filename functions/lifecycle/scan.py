"""What every renewer section shares: the run's report, what acting on one row did,
and the bounded scan of a query page by page (DESIGN.md, "Liveness")."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from functions.config import Settings
from functions.errors import CalsyncError
from functions.model import Channel, Subscription
from functions.ports import LifecycleStore, RowCursor

READ_PAST_FACTOR = 5  # rows read per section and run, at most, in batches


@dataclass
class RenewalReport:
    renewed: int = 0
    retired: int = 0  # channels already replaced (a renewal that crashed midway)
    failed: int = 0
    orphans_stopped: int = 0
    abandoned: int = 0
    gave_up: int = 0  # subscriptions put in `error`: their watches kept being refused
    swept: int = 0
    safety_net: int = 0
    net_found: int = 0  # safety-net probes that found a change no notification announced
    outbox_swept: int = 0  # publishing runs queued for entries left unpublished
    channels_deleted: int = 0  # abandoned channel records deleted after their retention
    deletions_resumed: int = 0  # unsubscribes finished after they were interrupted
    purged: int = 0  # removed subscriptions deleted once their retention ended (accounts)
    moved: int = 0  # rows looked at and moved to when they are next due
    over_budget: int = 0  # renewals left to a later run: the owner's call budget was short
    fanned_out: int = 0  # shard tasks queued by a tick (sharding.py)
    backfilled: int = 0  # channel records written before sharding given their shard
    shard: int | None = None  # a shard run: which shard of `shards`
    shards: int = 0
    channel_reads: int = 0
    subscription_reads: int = 0
    oldest_pending_age_s: float | None = None
    # Seconds since the oldest `publish_pending_since` (null: nothing waits); logged
    # on "renewer run" for the outbox-age alert.
    oldest_outbox_age_s: float | None = None
    continued: bool = False
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Step(Enum):
    """What acting on one row did."""

    PROGRESS = "progress"  # real progress: something finished for good
    FAILED = "failed"  # work was tried and failed (counts against the batch, not progress)
    MOVED = "moved"  # nothing to do yet: the row now sorts at when it is next due
    SKIPPED = "skipped"  # not ours (claimed elsewhere) or not due after all


@dataclass
class Section:
    """One section's pass: work done, real progress, and whether more may be due."""

    work: int = 0
    progress: int = 0
    more: bool = False


@dataclass
class Pass:
    """One renewer run as its sections see it."""

    settings: Settings
    subs: LifecycleStore
    batch: int
    now: datetime
    report: RenewalReport
    claimant: str  # names this run's channel claims
    _counting: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tally(self, counter: str, count: int = 1) -> None:
        """Add to one of the report's counters; safe from rows acted on at once."""
        with self._counting:
            setattr(self.report, counter, getattr(self.report, counter) + count)

    def scan(self, fetch: Callable[[RowCursor | None], list[tuple[Any, dict[str, Any]]]],
             cursor_of: Callable[[tuple[Any, dict[str, Any]]], RowCursor],
             act: Callable[[tuple[Any, dict[str, Any]]], Step],
             label: Callable[[tuple[Any, dict[str, Any]]], str],
             count_reads: Callable[[int], None], stop_when_full: bool = False,
             batch: int | None = None, in_flight: int = 1) -> Section:
        """Act on due rows page by page: at most a batch of work (tries, failed or
        not), at most READ_PAST_FACTOR batches read (`batch`: this section's own, else
        the run's). The cursor is the sort value
        and id of the last row as read, taken before acting on it: acting moves
        rows, never the cursor. With `stop_when_full`, a page that completes the
        batch ends the scan with `more` set: reading the next page only to learn
        whether it holds a row costs up to a batch of reads for one bit (at worst,
        one continuation then finds nothing: no progress, no further one).

        `in_flight` > 1 acts on up to that many rows of a page at once (`_act_all`):
        only for a section whose rows are independent and whose every act claims its
        row with a conditioned write, so two runs (or two threads) never do one row's
        work twice."""
        batch = batch or self.batch
        section, cursor, read = Section(), None, 0
        while read < batch * READ_PAST_FACTOR:
            rows = fetch(cursor)
            read += len(rows)
            count_reads(len(rows))
            done = 0
            while done < len(rows):
                if section.work >= batch:
                    section.more = True
                    return section
                # Each row adds at most one to `work`: acting on no more rows than the
                # batch has left keeps the batch a bound, rows acted on at once or not.
                chunk = rows[done:done + batch - section.work]
                done += len(chunk)
                for row, (step, error) in zip(chunk, _act_all(chunk, act, in_flight),
                                              strict=True):
                    if error is not None:  # this row only: the run goes on
                        self.report.errors.append(f"{label(row)}: {error}")
                    if step is Step.MOVED:
                        self.report.moved += 1
                    if step in (Step.PROGRESS, Step.FAILED):
                        section.work += 1
                    section.progress += step is Step.PROGRESS
            if len(rows) < batch:
                return section
            if stop_when_full and section.work >= batch:
                section.more = True
                return section
            cursor = cursor_of(rows[-1])
        section.more = True
        return section

    def channels(self, state: str, before: datetime,
                 act: Callable[[Channel, dict[str, Any]], Step],
                 shard: tuple[int, int] | None = None) -> Section:
        """Scan the channels in `state` due at or before `before` (by `expiration`),
        of one fan-out shard (k, n) or all. Channel work is the bulk of the renewer's
        reads at scale (issue 19, item 4): a full batch ends the scan."""
        def count(reads: int) -> None:
            self.report.channel_reads += reads

        return self.scan(
            lambda after: list(self.subs.due_channels(state, before, self.batch, after,
                                                      shard=shard)),
            lambda row: (row[1].get("expiration"), row[0].id), lambda row: act(*row),
            lambda row: str(row[0].sub_id), count, stop_when_full=True)

    def subscriptions(self, field_name: str, before: datetime,
                      act: Callable[[Subscription, dict[str, Any]], Step],
                      batch: int | None = None, in_flight: int = 1) -> Section:
        """Scan the subscriptions whose `field_name` is at or before `before`, `batch`
        (default the run's) rows a page and of work, `in_flight` acted on at once
        (see `scan`)."""
        batch = batch or self.batch

        def count(reads: int) -> None:
            self.report.subscription_reads += reads

        return self.scan(
            lambda after: list(self.subs.subscriptions_where(field_name, before, batch,
                                                             after)),
            lambda row: (row[1].get(field_name), row[0].id), lambda row: act(*row),
            lambda row: str(row[0].id), count, batch=batch, in_flight=in_flight)


Row = tuple[Any, dict[str, Any]]


def _act_one(act: Callable[[Row], Step], row: Row) -> tuple[Step, str | None]:
    try:
        return act(row), None
    except CalsyncError as err:
        return Step.FAILED, type(err).__name__


def _act_all(rows: Sequence[Row], act: Callable[[Row], Step],
             in_flight: int) -> list[tuple[Step, str | None]]:
    """What acting on each row did (and its error's name), in the rows' order; up to
    `in_flight` rows at once. A row's work is a chain of round trips (a probe: eight to
    Firestore and a task create), so one after another a run of a thousand rows takes
    minutes, not the seconds its batch is sized to (bench/safety_net.py). Each worker
    runs in a copy of the caller's context, so its log lines keep the request's trace.
    Any other exception than a CalsyncError is raised here, as it would be from the
    loop, once the rows already started have ended."""
    if in_flight <= 1 or len(rows) <= 1:
        return [_act_one(act, row) for row in rows]
    context = contextvars.copy_context()
    pool = ThreadPoolExecutor(min(in_flight, len(rows)), thread_name_prefix="calsync-renewer")
    try:
        futures = [pool.submit(context.copy().run, _act_one, act, row) for row in rows]
        return [future.result() for future in futures]
    finally:  # on an unexpected error, rows not yet started are not started
        pool.shutdown(wait=True, cancel_futures=True)
