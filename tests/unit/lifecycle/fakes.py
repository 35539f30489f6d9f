"""In-memory fakes of the lifecycle ports, for fast unit tests of the liveness rules.

They keep the same documents the Firestore adapters keep (plain dicts), so a
rule tested here is the rule the emulator tests check against Firestore.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from functions.adapters.firestore.channels import _channel
from functions.adapters.firestore.store import ENQUEUE_GRACE, _subscription
from functions.adapters.firestore.subscriptions import NEVER, subscription_key
from functions.errors import InvalidTransition, ResourceMismatch
from functions.model import (
    ACTIVE,
    DELETING,
    PENDING,
    Channel,
    Subscription,
    SyncRequest,
    Transition,
    channel_shard,
    shard_values,
)
from functions.model import DELIVERING_STATES as DELIVERING
from functions.ports import LifecycleStore, RequestStore, RowCursor


class MemoryLifecycle(LifecycleStore, RequestStore):
    def __init__(self) -> None:
        self.subs: dict[str, dict[str, Any]] = {}
        self.writers: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, int, str, dict[str, Any]]] = []  # lifecycle entries
        self.backfill: dict[str, Any] = {}

    # -- subscriptions --------------------------------------------------------

    def create_or_get(self, sub: Subscription, now: datetime) -> tuple[Subscription, bool]:
        key = subscription_key(sub.calendar_id, sub.owner)
        existing = self.keys.get(key)
        if existing in self.subs:
            return _subscription(existing, self.subs[existing]), False
        self.keys[key] = sub.id
        self.subs[sub.id] = {
            "calendar_id": sub.calendar_id, "owner": sub.owner, "key": key,
            "credentials_ref": sub.credentials_ref, "status": ACTIVE, "labels": sub.labels,
            "requested_gen": 1, "requested_at": now, "queued_gen": 0, "enqueuing_at": now,
            "sweep_at": now, "safety_net_at": NEVER,
            "last_synced_at": None, "created_at": now, "retry_at": None,
        }
        return _subscription(sub.id, self.subs[sub.id]), True

    def get(self, sub_id: str) -> tuple[Subscription, dict[str, Any]] | None:
        data = self.subs.get(sub_id)
        return None if data is None else (_subscription(sub_id, data), copy.copy(data))

    def writer_state(self, sub_id: str) -> dict[str, Any]:
        return dict(self.writers.get(sub_id, {}))

    def list_all(self, limit: int = 1000) -> list[tuple[Subscription, dict[str, Any]]]:
        return [(_subscription(i, d), dict(d)) for i, d in list(self.subs.items())[:limit]]

    def update(self, sub_id: str, fields: dict[str, Any]) -> None:
        self.subs[sub_id].update(fields)

    def transition(self, sub_id: str, allowed: Iterable[str], to: str, now: datetime,
                   fields: dict[str, Any] | None = None,
                   request_sync: bool = False) -> Transition:
        data = self.subs.get(sub_id)
        if data is None:
            raise LookupError(sub_id)
        status, requested = data["status"], int(data.get("requested_gen") or 0)
        if status == to:
            return Transition(False, status, requested)
        if status not in tuple(allowed):
            raise InvalidTransition(f"{sub_id} is {status}", status)
        data.update(status=to, **(fields or {}))
        if request_sync:
            requested += 1
            data.update(requested_gen=requested, requested_at=now, sweep_at=now)
        return Transition(True, status, requested)

    def begin_delete(self, sub_id: str, now: datetime) -> bool:
        if sub_id not in self.subs:
            return False
        if self.subs[sub_id]["status"] != DELETING:
            self.subs[sub_id].update(status=DELETING, deleting_since=now, sweep_at=None,
                                     safety_net_at=None)
        writer = self.writers.setdefault(sub_id, {})
        writer["lease_generation"] = int(writer.get("lease_generation") or 0) + 1
        return True

    def delete_tree(self, sub_id: str, credentials_ref: str) -> int:
        key = self.subs.pop(sub_id, {}).get("key")
        self.writers.pop(sub_id, None)
        for channel_id in [c for c, d in self.channels.items() if d["sub_id"] == sub_id]:
            del self.channels[channel_id]
        if key and self.keys.get(key) == sub_id:
            del self.keys[key]
        return 1

    def clear_request_marker(self, sub_id: str, requested_gen: int) -> bool:
        data = self.subs.get(sub_id)
        if data is None or data.get("requested_gen") != requested_gen:
            return False
        data.update(requested_at=None, sweep_at=None)
        return True

    def update_if(self, sub_id: str, expect: dict[str, Any], fields: dict[str, Any]) -> bool:
        data = self.subs.get(sub_id)
        if data is None or any(data.get(k) != v for k, v in expect.items()):
            return False
        data.update(fields)
        return True

    # -- requests (what FirestoreStore does for the webhook) -------------------

    def record_sync_request(self, sub_id: str, now: datetime) -> SyncRequest:
        data = self.subs.get(sub_id)
        if data is None:
            return SyncRequest(found=False, needs_task=False)
        requested = int(data.get("requested_gen") or 0)
        if data["status"] != ACTIVE:
            return SyncRequest(found=True, needs_task=False, generation=requested)
        if requested > int(self.writers.get(sub_id, {}).get("claimed_gen") or 0):
            queued = int(data.get("queued_gen") or 0) >= requested
            enqueuing = data.get("enqueuing_at")
            in_flight = enqueuing is not None and now - enqueuing < ENQUEUE_GRACE
            return SyncRequest(found=True, needs_task=not queued and not in_flight,
                               generation=requested)
        data.update(requested_gen=requested + 1, requested_at=now, enqueuing_at=now,
                    sweep_at=now)
        return SyncRequest(found=True, needs_task=True, generation=requested + 1)

    def request_full_resync(self, sub_id: str) -> int:
        data = self.subs[sub_id]
        data["full_resync_requested"] = int(data.get("full_resync_requested") or 0) + 1
        return int(data["full_resync_requested"])

    def enqueue_failed(self, sub_id: str, generation: int) -> None:
        data = self.subs.get(sub_id)
        if (data is not None and int(data.get("queued_gen") or 0) < generation
                and data.get("enqueuing_at") is not None):
            data["enqueuing_at"] = None

    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        data = self.subs.get(sub_id)
        if data is not None and int(data.get("queued_gen") or 0) < generation:
            data["queued_gen"] = generation

    # -- channels -------------------------------------------------------------

    def channels_of(self, sub_id: str) -> list[Channel]:
        return [_channel(i, d) for i, d in self.channels.items() if d["sub_id"] == sub_id]

    def delivering_channels(self, sub_id: str) -> list[Channel]:
        return [c for c in self.channels_of(sub_id) if c.state in DELIVERING]

    def channel_doc(self, channel_id: str) -> dict[str, Any]:
        return dict(self.channels.get(channel_id, {}))

    def save_channel(self, channel: Channel, now: datetime, **fields: Any) -> datetime | None:
        self.channels[channel.id] = {
            "sub_id": channel.sub_id, "state": channel.state,
            "resource_id": channel.resource_id, "expiration": channel.expiration,
            "created_at": now, "renewal_attempts": 0, "shard": channel_shard(channel.id),
            **fields}
        return None  # no versions here: every conditional write below checks the state

    def activate_channel(self, channel_id: str, sub_id: str, resource_id: str,
                         expiration: datetime, version: datetime | None = None) -> bool:
        doc = self.channels.get(channel_id)
        if doc is not None and doc.get("resource_id") not in (None, resource_id):
            raise ResourceMismatch(channel_id)
        if doc is None or doc["state"] != PENDING or sub_id not in self.subs:
            return False
        doc.update(state="active", resource_id=resource_id, expiration=expiration,
                   renewal_attempts=0, next_attempt_at=None, last_error=None)
        self.subs[sub_id].update(channel_id=channel_id, channel_expiration=expiration)
        return True

    def set_channel(self, channel_id: str, fields: dict[str, Any]) -> None:
        self.channels[channel_id].update(fields)

    def move_channel(self, channel_id: str, from_states: Iterable[str],
                     fields: dict[str, Any], version: datetime | None = None) -> bool:
        doc = self.channels.get(channel_id)
        if doc is None or doc["state"] not in tuple(from_states):
            return False
        doc.update(fields)
        return True

    def delete_channel(self, channel_id: str, state: str) -> bool:
        doc = self.channels.get(channel_id)
        if doc is None or doc["state"] != state:
            return False
        del self.channels[channel_id]
        return True

    def claim_channel(self, channel_id: str, state: str, now: datetime,
                      until: datetime, claimant: str = "",
                      version: datetime | None = None) -> bool:
        doc = self.channels.get(channel_id)
        claimed = (doc or {}).get("claimed_until")
        if doc is None or doc["state"] != state or (claimed is not None and claimed > now):
            return False
        doc.update(claimed_until=until, claimed_by=claimant)
        return True

    def claim_held(self, channel_id: str, claimant: str) -> Channel | None:
        doc = self.channels.get(channel_id)
        if doc is None or doc.get("claimed_by") != claimant:
            return None
        return _channel(channel_id, doc)

    def due_channels(self, state: str, before: datetime, limit: int,
                     after: RowCursor | None = None, shard: tuple[int, int] | None = None,
                     ) -> list[tuple[Channel, dict[str, Any]]]:
        values = set(shard_values(*shard)) if shard is not None else None
        rows = sorted((d["expiration"], i) for i, d in self.channels.items()
                      if d["state"] == state and d["expiration"] is not None
                      and d["expiration"] <= before
                      and (values is None or d.get("shard") in values))
        if after is not None:
            rows = [row for row in rows if row > after]
        return [(_channel(i, self.channels[i]), dict(self.channels[i])) for _, i in rows[:limit]]

    def assign_shards(self, channel_ids: Sequence[str]) -> int:
        written = 0
        for channel_id in channel_ids:
            if channel_id in self.channels:
                self.channels[channel_id]["shard"] = channel_shard(channel_id)
                written += 1
        return written

    def shard_backfill(self) -> dict[str, Any]:
        return dict(self.backfill)

    def save_shard_backfill(self, fields: dict[str, Any]) -> None:
        self.backfill = dict(fields)

    def subscriptions_where(self, field: str, before: datetime, limit: int,
                            after: RowCursor | None = None,
                            ) -> list[tuple[Subscription, dict[str, Any]]]:
        rows = sorted((d[field], i) for i, d in self.subs.items()
                      if d.get(field) is not None and d[field] <= before)
        if after is not None:
            rows = [row for row in rows if row > after]
        return [(_subscription(i, self.subs[i]), dict(self.subs[i])) for _, i in rows[:limit]]

    def oldest_request(self) -> datetime | None:
        times = [d["requested_at"] for d in self.subs.values()
                 if d["status"] == ACTIVE and d.get("requested_at") is not None]
        return min(times, default=None)

    def record_event(self, sub_id: str, kind: str, details: dict[str, Any],
                     now: datetime) -> int:
        if sub_id not in self.subs:
            raise LookupError(sub_id)
        writer = self.writers.setdefault(sub_id, {})
        seq = int(writer.get("change_seq") or 0) + 1
        writer["change_seq"] = seq
        self.events.append((sub_id, seq, kind, dict(details)))
        return seq


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
