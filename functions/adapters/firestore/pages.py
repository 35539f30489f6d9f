"""A sync run's page commits, as Firestore documents: encoding, prepared batches,
the run's fence, and where a pass stands (`listing` in `state/writer`).

A page commit writes snapshots, their change entries (dense `seq` after
`change_seq`) and `state/writer`, fenced on the run's lease. The first commit of
a run reads `state/writer` (its generation must be the run's); every later one is
a batch conditioned on `state/writer`'s update time as the run's own previous
commit left it, so it needs no read, and any other write there (a takeover, an
unsubscribe, a lifecycle entry) makes it fail whole, after which the store reads
again (`Fence`). Knowing `change_seq` without reading is what lets a run encode
its next commit while the previous one is on the wire (`PreparedPage`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

from google.cloud import firestore

from functions.adapters.firestore import catalogue, codec
from functions.errors import StoreRejected
from functions.model import LISTED, EventWrite, ListingProgress

# Placeholders as large as any real value, for estimates made before the
# commit stamps the time and allocates `seq`.
_SOME_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_SOME_SEQ = 2**62
# A run's fence is kept this many runs back at most (runs end with a release).
_FENCES_KEPT = 256
LISTING = "listing"  # the `state/writer` field holding a pass's `ListingProgress`


def seq_id(seq: int) -> str:
    """The document id of a change entry: zero-padded so ids sort by seq."""
    return f"{seq:020d}"


def write_bytes(sub_id: str, write: EventWrite) -> int:
    """Bytes `write` adds to a commit request: its snapshot and its entry."""
    base = f"{catalogue.SUBSCRIPTIONS}/{sub_id}"
    if write.listed_only:
        return codec.write_size(f"{base}/{catalogue.EVENTS}/{write.event_id}",
                                {LISTED: _SOME_SEQ})
    snapshot = codec.encode_snapshot({**write.snapshot, "_synced_at": _SOME_TIME,
                                      "_seq": _SOME_SEQ})
    size = codec.write_size(f"{base}/{catalogue.EVENTS}/{write.event_id}", snapshot)
    if write.change is not None:
        entry = codec.encode_change(write.change, _SOME_SEQ, _SOME_TIME, _SOME_TIME)
        size += codec.write_size(f"{base}/{catalogue.CHANGES}/{_SOME_SEQ:020d}", entry)
    return size


@dataclass(frozen=True)
class Encoded:
    """A write as stored: the snapshot document (only `_listed` for a write that
    merely marks the event listed) and its entry document, if any."""

    event_id: str
    snapshot: dict[str, Any]
    entry: dict[str, Any] | None
    listed_only: bool = False


def batch_writes(batch: Any, events: Any, changes: Any, encoded: Sequence[Encoded],
                 seq: int) -> tuple[int, list[dict[str, Any]]]:
    """Add `encoded` to `batch` (a WriteBatch or a Transaction) with `seq` allocated
    after `seq`; the last `seq` used and the entry documents written.

    Raises StoreRejected when the client refuses a field name itself."""
    entries: list[dict[str, Any]] = []
    for item in encoded:
        try:
            if item.listed_only:
                batch.update(events.document(item.event_id), item.snapshot)
                continue
            snapshot = item.snapshot
            if item.entry is not None:
                seq += 1
                snapshot = {**snapshot, "_seq": seq}
                entry = {**item.entry, "seq": seq}
                batch.set(changes.document(seq_id(seq)), entry)
                entries.append(entry)
            batch.set(events.document(item.event_id), snapshot)
        except ValueError as err:
            raise StoreRejected(
                f"event {item.event_id} was refused by Firestore: {err}") from err
    return seq, entries


class PreparedPage(Sequence[EventWrite]):
    """The writes of one page commit, already encoded into a batch whose `seq` values
    follow `after_seq` (`FirestoreStore.prepare_page`). To every other reader it is
    the sequence of writes it was made from."""

    def __init__(self, writes: Sequence[EventWrite], *, sub_id: str, generation: int,
                 now: datetime, encoded: list[Encoded], after_seq: int, batch: Any,
                 last_seq: int, entries: list[dict[str, Any]]) -> None:
        self.writes = tuple(writes)
        self.sub_id, self.generation, self.now = sub_id, generation, now
        self.encoded, self.after_seq, self.last_seq = encoded, after_seq, last_seq
        self.entries = entries
        self._batch: Any = batch

    def take_batch(self, sub_id: str, generation: int, now: datetime, seq: int) -> Any:
        """The encoded batch, once, if it was made for this run, time and `change_seq`."""
        if (self._batch is None or (sub_id, generation, now, seq)
                != (self.sub_id, self.generation, self.now, self.after_seq)):
            return None
        batch, self._batch = self._batch, None
        return batch

    @overload
    def __getitem__(self, index: int) -> EventWrite: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[EventWrite]: ...

    def __getitem__(self, index: int | slice) -> EventWrite | Sequence[EventWrite]:
        return self.writes[index]

    def __len__(self) -> int:
        return len(self.writes)


@dataclass
class Fence:
    """`state/writer` as the run's own last commit left it: its update time (the next
    commit's precondition) and its fields (`change_seq`, the outbox's marks)."""

    update_time: Any
    state: dict[str, Any]

    def applied(self, update_time: Any, update: Mapping[str, Any]) -> Fence:
        state = dict(self.state)
        for name, value in update.items():
            if value is firestore.DELETE_FIELD:
                state.pop(name, None)
            else:
                state[name] = value
        return Fence(update_time, state)


@dataclass
class Fences:
    """The fence of each run in flight in this process, by (subscription, generation)."""

    _fences: dict[tuple[str, int], Fence] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, sub_id: str, generation: int) -> Fence | None:
        with self._lock:
            return self._fences.get((sub_id, generation))

    def put(self, sub_id: str, generation: int, fence: Fence) -> None:
        with self._lock:
            self._fences.pop((sub_id, generation), None)
            self._fences[(sub_id, generation)] = fence
            while len(self._fences) > _FENCES_KEPT:
                del self._fences[next(iter(self._fences))]

    def drop(self, sub_id: str, generation: int) -> None:
        with self._lock:
            self._fences.pop((sub_id, generation), None)


def encode_progress(progress: ListingProgress) -> dict[str, Any]:
    return {
        "sync_token": progress.sync_token,
        "page_token": progress.page_token,
        "mode": progress.mode,
        "claimed_gen": progress.claimed_gen,
        "full_resync": progress.full_resync,
        "fresh": progress.fresh,
        "mark": progress.mark,
        "next_sync_token": progress.next_sync_token,
        "reconciled_after": progress.reconciled_after,
        "started_at": progress.started_at,
    }


def decode_progress(data: Any) -> ListingProgress | None:
    """The saved progress, or None when there is none (or it cannot be read: the
    pass then starts again from the top, which is always correct)."""
    if not isinstance(data, Mapping):
        return None
    try:
        mode = str(data["mode"])
        if mode not in ("incremental", "full", "full_after_410"):
            return None
        return ListingProgress(
            sync_token=_text(data.get("sync_token")),
            page_token=_text(data.get("page_token")),
            mode=mode,
            claimed_gen=int(data.get("claimed_gen") or 0),
            full_resync=int(data.get("full_resync") or 0),
            fresh=bool(data.get("fresh")),
            mark=int(data.get("mark") or 0),
            next_sync_token=_text(data.get("next_sync_token")),
            reconciled_after=_text(data.get("reconciled_after")),
            started_at=_moment(data.get("started_at")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _moment(value: Any) -> datetime | None:
    """A stored time (Firestore returns it timezone-aware), else None: the watermark
    then stays where it is, which is always correct."""
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None

