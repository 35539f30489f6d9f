"""The simulated Firestore: the same documents the adapters keep, in dicts, metered.

Collections follow DESIGN.md's data model (`subscriptions/{id}`, its
`state/writer`, `events/`, `changes/`, `channels/{id}`, `subscription_keys/`).
Every read and write goes through `IoMeter` with the document's path. The
renewer's queries are answered from `SortedIndex`es kept beside the documents,
the way Firestore answers them from its indexes; `touch_sub` / `touch_channel`
/ `touch_writer` keep those indexes current after a document changes.

A document's update time (`_version`, an increasing integer) stands in for
Firestore's, for the writes conditioned on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from functions.model import ACTIVE
from infra.sim.index import SortedIndex
from infra.sim.meter import IoMeter

SUBSCRIPTIONS = "subscriptions"
CHANNELS = "channels"
KEYS = "subscription_keys"
# The subscription fields the renewer queries (status == active, ordered by field).
SUB_QUERY_FIELDS = ("requested_at", "last_synced_at")


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
        self.events: dict[str, dict[str, dict[str, Any]]] = {}
        self.changes: dict[str, dict[int, dict[str, Any]]] = {}
        self.sub_index = {name: SortedIndex() for name in SUB_QUERY_FIELDS}
        self.channel_index: dict[str, SortedIndex] = {}
        self.outbox_index = SortedIndex()  # state/writer.publish_pending_since
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
        active = data is not None and data.get("status", ACTIVE) == ACTIVE
        for name, index in self.sub_index.items():
            if active and data is not None:
                index.set(sub_id, data.get(name))
            else:
                index.remove(sub_id)

    def touch_channel(self, channel_id: str, previous_state: str | None = None) -> None:
        data = self.channels.get(channel_id)
        if previous_state is not None and (data is None or data.get("state") != previous_state):
            self.channel_index.get(previous_state, SortedIndex()).remove(channel_id)
        if data is None:
            return
        state = data.get("state")
        index = self.channel_index.setdefault(str(state), SortedIndex())
        if data.get("expiration") is None:
            index.remove(channel_id)  # `expiration <= T` never matches a null
        else:
            index.set(channel_id, data["expiration"])

    def touch_writer(self, sub_id: str) -> None:
        pending = self.writers.get(sub_id, {}).get("publish_pending_since")
        if pending is None:
            self.outbox_index.remove(sub_id)
        else:
            self.outbox_index.set(sub_id, pending)

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
        """`set(..., merge=True)` / `update` of `state/writer`."""
        self.writers.setdefault(sub_id, {}).update(fields)
        self.io.write(writer_path(sub_id))
        if "publish_pending_since" in fields:
            self.touch_writer(sub_id)

    def set_channel_fields(self, channel_id: str, fields: dict[str, Any]) -> None:
        data = self.channels[channel_id]
        previous = data.get("state")
        data.update(fields)
        data["_version"] = self.version()
        self.io.write(channel_path(channel_id))
        self.touch_channel(channel_id, previous)

    def put_channel(self, channel_id: str, data: dict[str, Any]) -> None:
        old = self.channels.get(channel_id)
        previous = old.get("state") if old else None
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
