"""The simulated Firestore: the same documents the adapters keep, in dicts, metered.

Collections follow DESIGN.md's data model (`subscriptions/{id}`, its
`state/writer`, `events/`, `changes/`, `channels/{id}`, `subscription_keys/`).
Every read and write goes through `IoMeter` with the document's path. The
renewer's queries are answered from `SortedIndex`es kept beside the documents,
the way Firestore answers them from its indexes (`catalogue.py` lists them):
the subscriptions' sort keys (`sweep_at`, `safety_net_at`, `deleting_since`,
any status, nulls not indexed), active subscriptions' `requested_at`, channels
by state and by (state, shard) ordered by `expiration`, and `state/writer` by
`publish_pending_since` and by `publish_sweep_at`; `touch_sub` / `touch_channel` /
`touch_writer` keep them current after a document changes.

A document's update time (`_version`, an increasing integer) stands in for
Firestore's, for the writes conditioned on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from google.cloud.firestore import DELETE_FIELD

from functions.model import ACTIVE, LifecycleDraft
from infra.sim.index import SortedIndex
from infra.sim.meter import IoMeter

SUBSCRIPTIONS = "subscriptions"
CHANNELS = "channels"
KEYS = "subscription_keys"
RENEWER = "renewer"
# The subscription fields the renewer ranges over (`subscriptions_where`: any status;
# a null or absent value is not in the range).
SUB_QUERY_FIELDS = ("sweep_at", "safety_net_at", "deleting_since")


def sub_path(sub_id: str) -> str:
    return f"{SUBSCRIPTIONS}/{sub_id}"


def writer_path(sub_id: str) -> str:
    return f"{SUBSCRIPTIONS}/{sub_id}/state/writer"


def event_path(sub_id: str, event_id: str) -> str:
    return f"{SUBSCRIPTIONS}/{sub_id}/events/{event_id}"


def change_path(sub_id: str, seq: int) -> str:
    return f"{SUBSCRIPTIONS}/{sub_id}/changes/{seq:020d}"


def channel_path(channel_id: str) -> str:
    return f"{CHANNELS}/{channel_id}"


class SimDatabase:
    """Documents, their indexes and the meter."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.io = IoMeter(now)
        self.subs: dict[str, dict[str, Any]] = {}
        self.writers: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.channels_by_sub: dict[str, set[str]] = {}
        self.renewer_docs: dict[str, dict[str, Any]] = {}  # `renewer/{id}`
        self.events: dict[str, dict[str, dict[str, Any]]] = {}
        self.changes: dict[str, dict[int, dict[str, Any]]] = {}
        self.sub_index = {name: SortedIndex() for name in SUB_QUERY_FIELDS}
        # `status == active and requested_at > epoch order by requested_at` (oldest_request)
        self.request_index = SortedIndex()
        self.channel_index: dict[str, SortedIndex] = {}  # by state
        self.shard_index: dict[tuple[str, int], SortedIndex] = {}  # by (state, shard)
        self.outbox_index = SortedIndex()  # state/writer.publish_pending_since
        self.outbox_due_index = SortedIndex()  # state/writer.publish_sweep_at
        self._versions = itertools.count(1)
        # Observers of committed change entries (the staleness probe).
        self.on_entries: list[Callable[[str, list[dict[str, Any]]], None]] = []
        # ... and of final commits (sub_id, the sync token committed).
        self.on_final: list[Callable[[str, str], None]] = []

    def version(self) -> int:
        return next(self._versions)

    # -- keeping the indexes current -----------------------------------------------

    def touch_sub(self, sub_id: str) -> None:
        data = self.subs.get(sub_id)
        for name, index in self.sub_index.items():
            value = None if data is None else data.get(name)
            if value is None:
                index.remove(sub_id)
            else:
                index.set(sub_id, value)
        asked = None if data is None or data.get("status", ACTIVE) != ACTIVE else (
            data.get("requested_at"))
        if asked is None:
            self.request_index.remove(sub_id)
        else:
            self.request_index.set(sub_id, asked)

    def touch_channel(self, channel_id: str, previous: dict[str, Any] | None = None) -> None:
        """After a channel record changed: `previous` is (state, shard) it had."""
        data = self.channels.get(channel_id)
        old_state, old_shard = (previous or {}).get("state"), (previous or {}).get("shard")
        if previous is not None:
            if data is None or data.get("state") != old_state:
                index = self.channel_index.get(str(old_state))
                if index is not None:
                    index.remove(channel_id)
            moved = data is None or (data.get("state"), data.get("shard")) != (old_state,
                                                                               old_shard)
            if moved and old_shard is not None:
                old_index = self.shard_index.get((str(old_state), int(old_shard)))
                if old_index is not None:
                    old_index.remove(channel_id)
        if data is None:
            return
        state, shard = str(data.get("state")), data.get("shard")
        indexes = [self.channel_index.setdefault(state, SortedIndex())]
        if shard is not None:
            indexes.append(self.shard_index.setdefault((state, int(shard)), SortedIndex()))
        for index in indexes:
            if data.get("expiration") is None:
                index.remove(channel_id)  # `expiration <= T` never matches a null
            else:
                index.set(channel_id, data["expiration"])

    def touch_writer(self, sub_id: str) -> None:
        writer = self.writers.get(sub_id, {})
        for name, index in (("publish_pending_since", self.outbox_index),
                            ("publish_sweep_at", self.outbox_due_index)):
            value = writer.get(name)
            if value is None:
                index.remove(sub_id)
            else:
                index.set(sub_id, value)

    # -- documents -----------------------------------------------------------------

    def read_sub(self, sub_id: str) -> dict[str, Any] | None:
        self.io.read(sub_path(sub_id))
        return self.subs.get(sub_id)

    def read_writer(self, sub_id: str) -> dict[str, Any]:
        self.io.read(writer_path(sub_id))
        return self.writers.get(sub_id) or {}

    def read_channel(self, channel_id: str) -> dict[str, Any] | None:
        self.io.read(channel_path(channel_id))
        return self.channels.get(channel_id)

    def update_sub(self, sub_id: str, fields: dict[str, Any]) -> None:
        """`update` semantics: the document must exist (callers check)."""
        data = self.subs[sub_id]
        data.update(fields)
        data["_version"] = self.version()
        self.io.write(sub_path(sub_id))
        self.touch_sub(sub_id)

    def merge_writer(self, sub_id: str, fields: dict[str, Any]) -> None:
        """`set(..., merge=True)` / `update` of `state/writer` (`DELETE_FIELD` removes)."""
        writer = self.writers.setdefault(sub_id, {})
        for name, value in fields.items():
            if value is DELETE_FIELD:
                writer.pop(name, None)
            else:
                writer[name] = value
        self.io.write(writer_path(sub_id))
        if "publish_pending_since" in fields or "publish_sweep_at" in fields:
            self.touch_writer(sub_id)

    def delete_channel(self, channel_id: str) -> None:
        old = self.channels.pop(channel_id, None)
        self.io.write(channel_path(channel_id))
        if old is not None:
            self.channels_by_sub.get(str(old.get("sub_id")), set()).discard(channel_id)
            self.touch_channel(channel_id, _placing(old))

    def set_channel_fields(self, channel_id: str, fields: dict[str, Any]) -> None:
        """`update` semantics: the record must exist (callers check)."""
        data = self.channels[channel_id]
        previous = _placing(data)
        data.update(fields)
        data["_version"] = self.version()
        self.io.write(channel_path(channel_id))
        self.touch_channel(channel_id, previous)

    def put_channel(self, channel_id: str, data: dict[str, Any]) -> None:
        """`set` semantics: create or replace the record."""
        old = self.channels.get(channel_id)
        previous = _placing(old) if old else None
        data["_version"] = self.version()
        self.channels[channel_id] = data
        self.channels_by_sub.setdefault(str(data.get("sub_id")), set()).add(channel_id)
        self.io.write(channel_path(channel_id))
        self.touch_channel(channel_id, previous)

    def query_channels(self, sub_id: str) -> list[tuple[str, dict[str, Any]]]:
        """`channels where sub_id == X` (one query: its rows are billed)."""
        rows = [(c, self.channels[c]) for c in sorted(self.channels_by_sub.get(sub_id, ()))
                if c in self.channels]
        self.io.read_many([channel_path(c) for c, _ in rows], CHANNELS)
        return rows


def _placing(data: dict[str, Any]) -> dict[str, Any]:
    """What puts a channel in its indexes (for `touch_channel`)."""
    return {"state": data.get("state"), "shard": data.get("shard")}


def append_lifecycle(db: SimDatabase, sub_id: str, state: dict[str, Any],
                     drafts: Sequence[LifecycleDraft], now: datetime, expire_at: datetime,
                     ) -> tuple[int, list[dict[str, Any]]]:
    """`store.append_lifecycle` over the sim: `drafts` as the entries after `state`'s
    `change_seq`, one write each; the new `change_seq` and the entries (the caller
    updates the writer state, as the adapter's callers do)."""
    seq = int(state.get("change_seq") or 0)
    written = []
    changes = db.changes.setdefault(sub_id, {})
    for draft in drafts:
        seq += 1
        entry = {"seq": seq, "kind": draft.kind, "event_id": None, "recurring_event_id": None,
                 "fields": {}, "details": dict(draft.details), "etag": None, "at": now,
                 "expire_at": expire_at}
        changes[seq] = entry
        db.io.write(change_path(sub_id, seq))
        written.append(dict(entry))
    return seq, written
