"""The lifecycle's and the webhook's channel stores over `SimDatabase`.

`SimLifecycleStore` does what `adapters/firestore/subscriptions.py`
(`SubscriptionStore`) does, `SimChannelStore` what `adapters/firestore/channels.py`
(`FirestoreChannelStore`) does: the same documents, the same conditions, the
same reads and writes billed. The renewer's queries use the database's
indexes (see `infra.sim.index`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.firestore.channels import _channel
from functions.adapters.firestore.store import _subscription
from functions.adapters.firestore.subscriptions import subscription_key
from functions.errors import InvalidTransition, ResourceMismatch
from functions.model import ACTIVE, DELETING, DELIVERING_STATES, Channel, Subscription, Transition
from functions.ports import ChannelStore, LifecycleStore
from infra.sim.database import (
    CHANNELS,
    KEYS,
    SUBSCRIPTIONS,
    SimDatabase,
    channel_path,
    sub_path,
    writer_path,
)


class SimLifecycleStore(LifecycleStore):
    def __init__(self, db: SimDatabase) -> None:
        self.db = db

    # -- subscriptions ------------------------------------------------------------

    def create_or_get(self, sub: Subscription, now: datetime) -> tuple[Subscription, bool]:
        db = self.db
        key = subscription_key(sub.calendar_id, sub.owner)
        db.io.read(f"{KEYS}/{key}")
        existing = db.keys.get(key)
        if existing is not None:
            data = db.read_sub(existing)
            if data is not None:
                return _subscription(existing, data), False
        db.keys[key] = sub.id
        db.io.write(f"{KEYS}/{key}")
        db.subs[sub.id] = {
            "calendar_id": sub.calendar_id, "owner": sub.owner, "key": key,
            "credentials_ref": sub.credentials_ref, "status": ACTIVE, "labels": dict(sub.labels),
            "last_error": None, "last_error_at": None, "requested_gen": 1, "requested_at": now,
            "queued_gen": 0, "enqueuing_at": now, "retry_at": None, "last_synced_at": None,
            "last_notification_at": None, "created_at": now, "channel_id": None,
            "channel_expiration": None, "_version": db.version(),
        }
        db.io.write(sub_path(sub.id))
        db.touch_sub(sub.id)
        return Subscription(id=sub.id, calendar_id=sub.calendar_id, owner=sub.owner,
                            credentials_ref=sub.credentials_ref, labels=dict(sub.labels),
                            requested_gen=1, created_at=now), True

    def get(self, sub_id: str) -> tuple[Subscription, dict[str, Any]] | None:
        data = self.db.read_sub(sub_id)
        return None if data is None else (_subscription(sub_id, data), dict(data))

    def writer_state(self, sub_id: str) -> dict[str, Any]:
        return dict(self.db.read_writer(sub_id))

    def list_all(self, limit: int = 1000) -> list[tuple[Subscription, dict[str, Any]]]:
        ids = sorted(self.db.subs)[:limit]
        self.db.io.read_many([sub_path(i) for i in ids], SUBSCRIPTIONS)
        return [(_subscription(i, self.db.subs[i]), dict(self.db.subs[i])) for i in ids]

    def update(self, sub_id: str, fields: dict[str, Any]) -> None:
        self.db.update_sub(sub_id, fields)

    def transition(self, sub_id: str, allowed: Iterable[str], to: str, now: datetime,
                   fields: dict[str, Any] | None = None,
                   request_sync: bool = False) -> Transition:
        allowed = tuple(allowed)
        data = self.db.read_sub(sub_id)
        if data is None:
            raise LookupError(sub_id)
        status = data.get("status", ACTIVE)
        requested = int(data.get("requested_gen") or 0)
        if status == to:
            return Transition(changed=False, previous=status, generation=requested)
        if status not in allowed:
            raise InvalidTransition(f"subscription {sub_id} is {status}: cannot become {to}",
                                    status)
        update: dict[str, Any] = {"status": to, "status_changed_at": now, **(fields or {})}
        if request_sync:
            requested += 1
            update.update(requested_gen=requested, requested_at=now)
        self.db.update_sub(sub_id, update)
        return Transition(changed=True, previous=status, generation=requested)

    def begin_delete(self, sub_id: str, now: datetime) -> bool:
        data = self.db.read_sub(sub_id)
        state = self.db.read_writer(sub_id)
        if data is None:
            return False
        if data.get("status") != DELETING:
            self.db.update_sub(sub_id, {"status": DELETING, "deleting_since": now})
        self.db.merge_writer(sub_id, {
            "lease_generation": int(state.get("lease_generation") or 0) + 1,
            "lease_until": None})
        return True

    def delete_tree(self, sub_id: str, credentials_ref: str) -> int:
        db = self.db
        deleted = 0
        for event_id in list(db.events.pop(sub_id, {})):
            db.io.write(f"{sub_path(sub_id)}/events/{event_id}")
            deleted += 1
        for seq in list(db.changes.pop(sub_id, {})):
            db.io.write(f"{sub_path(sub_id)}/changes/{seq:020d}")
            deleted += 1
        if db.writers.pop(sub_id, None) is not None:
            db.io.write(writer_path(sub_id))
            db.touch_writer(sub_id)
            deleted += 1
        for channel_id, _ in db.query_channels(sub_id):
            previous = db.channels.pop(channel_id, {}).get("state")
            db.io.write(channel_path(channel_id))
            db.touch_channel(channel_id, previous)
            deleted += 1
        db.channels_by_sub.pop(sub_id, None)
        data = db.subs.pop(sub_id, None)
        db.io.write(sub_path(sub_id))
        db.touch_sub(sub_id)
        key = (data or {}).get("key")
        if key and db.keys.get(key) == sub_id:
            del db.keys[key]
            db.io.write(f"{KEYS}/{key}")
        return deleted + 1

    def clear_request_marker(self, sub_id: str, requested_gen: int) -> bool:
        data = self.db.read_sub(sub_id)
        if data is None or int(data.get("requested_gen") or 0) != requested_gen:
            return False
        self.db.update_sub(sub_id, {"requested_at": None})
        return True

    # -- channels -----------------------------------------------------------------

    def channels_of(self, sub_id: str) -> list[Channel]:
        return [_channel(i, d) for i, d in self.db.query_channels(sub_id)]

    def delivering_channels(self, sub_id: str) -> list[Channel]:
        db = self.db
        rows = [(c, db.channels[c]) for c in sorted(db.channels_by_sub.get(sub_id, ()))
                if c in db.channels and db.channels[c].get("state") in DELIVERING_STATES]
        db.io.read_many([channel_path(c) for c, _ in rows], CHANNELS)
        return [_channel(i, d) for i, d in rows]

    def channel_doc(self, channel_id: str) -> dict[str, Any]:
        return dict(self.db.read_channel(channel_id) or {})

    def activate_channel(self, channel_id: str, sub_id: str, resource_id: str,
                         expiration: datetime) -> None:
        db = self.db
        doc = db.read_channel(channel_id)
        known = (doc or {}).get("resource_id")
        if known is not None and known != resource_id:
            raise ResourceMismatch(channel_id)
        if doc is None or sub_id not in db.subs:
            return  # the batch's update fails NotFound: unsubscribed meanwhile
        db.set_channel_fields(channel_id, {
            "state": "active", "resource_id": resource_id, "expiration": expiration,
            "renewal_attempts": 0, "next_attempt_at": None, "last_error": None})
        db.update_sub(sub_id, {"channel_id": channel_id, "channel_expiration": expiration})

    def save_channel(self, channel: Channel, now: datetime, **fields: Any) -> None:
        self.db.put_channel(channel.id, {
            "sub_id": channel.sub_id, "state": channel.state,
            "resource_id": channel.resource_id, "expiration": channel.expiration,
            "created_at": now, "last_notification_at": None, "last_message_number": 0,
            "renewal_attempts": 0, **fields})

    def set_channel(self, channel_id: str, fields: dict[str, Any]) -> None:
        self.db.set_channel_fields(channel_id, fields)

    def claim_channel(self, channel_id: str, state: str, now: datetime,
                      until: datetime) -> bool:
        doc = self.db.read_channel(channel_id)
        if doc is None or doc.get("state") != state:
            return False
        claimed = doc.get("claimed_until")
        if claimed is not None and claimed > now:
            return False
        self.db.set_channel_fields(channel_id, {"claimed_until": until})
        return True

    def due_channels(self, state: str, before: datetime, limit: int,
                     after: str | None = None) -> list[tuple[Channel, dict[str, Any]]]:
        db = self.db
        index = db.channel_index.get(state)
        if after is not None:
            db.io.read(channel_path(after))  # the cursor document
        ids = index.scan(before, limit, include_null=False, after=after) if index else []
        db.io.read_many([channel_path(i) for i in ids], CHANNELS)
        return [(_channel(i, db.channels[i]), dict(db.channels[i])) for i in ids]

    def subscriptions_where(self, field: str, before: datetime, limit: int,
                            after: str | None = None, *, include_null: bool = False,
                            ) -> list[tuple[Subscription, dict[str, Any]]]:
        db = self.db
        if after is not None:
            db.io.read(sub_path(after))
        ids = db.sub_index[field].scan(before, limit, include_null=include_null, after=after)
        db.io.read_many([sub_path(i) for i in ids], SUBSCRIPTIONS)
        return [(_subscription(i, db.subs[i]), dict(db.subs[i])) for i in ids]

    def oldest_request(self) -> datetime | None:
        first = self.db.sub_index["requested_at"].first()
        self.db.io.read_many([sub_path(first[1])] if first else [], SUBSCRIPTIONS)
        return first[0] if first else None


class SimChannelStore(ChannelStore):
    """The webhook's channel lookups and bookkeeping."""

    def __init__(self, db: SimDatabase) -> None:
        self.db = db

    def get_channel(self, channel_id: str) -> Channel | None:
        doc = self.db.read_channel(channel_id)
        if doc is None:
            return None
        return _channel(channel_id, doc, _version_time(doc))

    def learn_resource_id(self, channel_id: str, resource_id: str) -> None:
        doc = self.db.read_channel(channel_id)
        if doc is None:
            return
        known = doc.get("resource_id")
        if known is not None:
            if known != resource_id:
                raise ResourceMismatch(channel_id)
            return
        self.db.set_channel_fields(channel_id, {"resource_id": resource_id})

    def record_notification(self, channel: Channel, message_number: int,
                            now: datetime) -> datetime | None:
        db = self.db
        doc = db.channels.get(channel.id)
        if doc is None:
            return None
        if channel.version is not None and _version_time(doc) != channel.version:
            return None  # written by someone else since it was read
        if channel.sub_id and channel.sub_id not in db.subs:
            return None  # the batch's update of the subscription fails NotFound
        fields = {"last_notification_at": now, "last_message_number": message_number}
        db.set_channel_fields(channel.id, fields)
        if channel.sub_id:
            db.update_sub(channel.sub_id, fields)
        return _version_time(db.channels[channel.id])


_VERSION_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def _version_time(doc: dict[str, Any]) -> datetime:
    """The document's update time as a datetime (what Firestore's `update_time` is to
    the adapter): the database's write counter, in microseconds past a fixed origin."""
    return _VERSION_ORIGIN + timedelta(microseconds=int(doc.get("_version") or 0))
