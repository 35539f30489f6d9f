"""The lifecycle's and the webhook's channel stores over `SimDatabase`.

`SimLifecycleStore` does what `adapters/firestore/subscriptions.py`
(`SubscriptionStore`) does, `SimChannelStore` what `adapters/firestore/channels.py`
(`FirestoreChannelStore`) does: the same documents, the same conditions, the
same reads and writes billed. The renewer's queries use the database's
indexes (see `infra.sim.index`); their page cursors are the (value, id) of the
last row as read, as the adapter's `start_after` takes them (no read).

A write conditioned on an update time (`version`) is billed only when it goes
through, and needs no read while the record is unchanged since that time; the
database's `_version` counter stands in for Firestore's update time
(`_version_time`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.firestore.channels import _channel
from functions.adapters.firestore.store import FEED_RETENTION, _subscription, outbox_fields
from functions.adapters.firestore.subscriptions import (
    NEVER,
    SHARD_BACKFILL,
    subscription_key,
)
from functions.errors import InvalidTransition, ResourceMismatch, StoreError
from functions.model import (
    ACTIVE,
    DELETING,
    DELIVERING_STATES,
    OAUTH_PREFIX,
    PENDING,
    Channel,
    Subscription,
    Transition,
    channel_shard,
    shard_values,
)
from functions.ports import ChannelStore, LifecycleStore, RowCursor
from infra.sim.database import (
    CHANNELS,
    KEYS,
    RENEWER,
    SUBSCRIPTIONS,
    SimDatabase,
    change_path,
    channel_path,
    sub_path,
    writer_path,
)


class SimLifecycleStore(LifecycleStore):
    def __init__(self, db: SimDatabase, *, outbox: bool = False,
                 feed_retention: timedelta = FEED_RETENTION) -> None:
        self.db = db
        self._outbox = outbox  # a topic is configured: lifecycle entries are published
        self._retention = feed_retention

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
            "queued_gen": 0, "enqueuing_at": now, "sweep_at": now, "safety_net_at": NEVER,
            "retry_at": None, "last_synced_at": None, "last_notification_at": None,
            "created_at": now, "channel_id": None, "channel_expiration": None,
            "_version": db.version(),
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
        if sub_id not in self.db.subs:
            raise StoreError(f"subscription {sub_id} not found")  # `update`: NotFound
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
            update.update(requested_gen=requested, requested_at=now, sweep_at=now)
        self.db.update_sub(sub_id, update)
        return Transition(changed=True, previous=status, generation=requested)

    def begin_delete(self, sub_id: str, now: datetime) -> bool:
        data = self.db.read_sub(sub_id)
        state = self.db.read_writer(sub_id)
        if data is None:
            return False
        if data.get("status") != DELETING:
            self.db.update_sub(sub_id, {"status": DELETING, "deleting_since": now,
                                        "sweep_at": None, "safety_net_at": None})
        self.db.merge_writer(sub_id, {
            "lease_generation": int(state.get("lease_generation") or 0) + 1,
            "lease_until": None})
        return True

    def delete_tree(self, sub_id: str, credentials_ref: str) -> int:
        # As the adapter: read the subscription (for its key); delete each collection
        # (events, changes, state, then the channels) a query page at a time, every
        # document read and deleted, until a page comes back empty (one read); the
        # credentials (an OAuth grant's), the subscription; the key in a transaction.
        db = self.db
        data = db.read_sub(sub_id)
        events = db.events.pop(sub_id, {})
        changes = db.changes.pop(sub_id, {})
        writer = db.writers.pop(sub_id, None)
        db.touch_writer(sub_id)
        collections = [
            ("events", [f"{sub_path(sub_id)}/events/{event_id}" for event_id in events]),
            ("changes", [f"{sub_path(sub_id)}/changes/{seq:020d}" for seq in changes]),
            ("state", [writer_path(sub_id)] if writer is not None else [])]
        deleted = 0
        for name, paths in collections:
            db.io.read_many(paths, name)
            for path in paths:
                db.io.write(path)
            if paths:
                db.io.read_many([], name)  # the page that comes back empty
            deleted += len(paths)
        rows = db.query_channels(sub_id)
        for channel_id, _ in rows:
            db.delete_channel(channel_id)
        if rows:
            db.io.read_many([], CHANNELS)
        deleted += len(rows)
        db.channels_by_sub.pop(sub_id, None)
        if credentials_ref.startswith(OAUTH_PREFIX):
            db.io.write(f"credentials/{credentials_ref[len(OAUTH_PREFIX):]}")
        db.subs.pop(sub_id, None)
        db.io.write(sub_path(sub_id))
        db.touch_sub(sub_id)
        key = (data or {}).get("key")
        if key:
            db.io.read(f"{KEYS}/{key}")
            if db.keys.get(key) == sub_id:
                del db.keys[key]
                db.io.write(f"{KEYS}/{key}")
        return deleted + 1

    def clear_request_marker(self, sub_id: str, requested_gen: int) -> bool:
        data = self.db.read_sub(sub_id)
        if data is None or int(data.get("requested_gen") or 0) != requested_gen:
            return False
        self.db.update_sub(sub_id, {"requested_at": None, "sweep_at": None})
        return True

    def update_if(self, sub_id: str, expect: dict[str, Any], fields: dict[str, Any]) -> bool:
        data = self.db.read_sub(sub_id)
        if data is None or any(data.get(k) != v for k, v in expect.items()):
            return False
        self.db.update_sub(sub_id, fields)
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
                         expiration: datetime, version: datetime | None = None) -> bool:
        db = self.db
        doc = db.channels.get(channel_id)
        unchanged = version is not None and doc is not None and _version_time(doc) == version
        if not unchanged:  # read first: no version, or someone wrote it since
            doc = db.read_channel(channel_id)
            known = (doc or {}).get("resource_id")
            if known is not None and known != resource_id:
                raise ResourceMismatch(channel_id)
            if doc is None or doc.get("state") != PENDING:
                return False  # stopped, abandoned or deleted meanwhile: never revived
        if sub_id not in db.subs:
            return False  # the batch's update of the subscription fails NotFound
        db.set_channel_fields(channel_id, {
            "state": ACTIVE, "resource_id": resource_id, "expiration": expiration,
            "renewal_attempts": 0, "next_attempt_at": None, "last_error": None})
        db.update_sub(sub_id, {"channel_id": channel_id, "channel_expiration": expiration})
        return True

    def save_channel(self, channel: Channel, now: datetime, **fields: Any) -> datetime | None:
        self.db.put_channel(channel.id, {
            "sub_id": channel.sub_id, "state": channel.state,
            "resource_id": channel.resource_id, "expiration": channel.expiration,
            "created_at": now, "last_notification_at": None, "last_message_number": 0,
            "renewal_attempts": 0, "shard": channel_shard(channel.id), **fields})
        return _version_time(self.db.channels[channel.id])

    def set_channel(self, channel_id: str, fields: dict[str, Any]) -> None:
        if channel_id not in self.db.channels:
            raise StoreError(f"channel {channel_id} not found")  # `update`: NotFound
        self.db.set_channel_fields(channel_id, fields)

    def _conditional(self, channel_id: str, allowed: Callable[[dict[str, Any]], bool],
                     version: datetime | None) -> bool:
        """Whether the adapter's conditional write goes through: with `version` and
        the record unchanged since, without a read; else after reading it allowed."""
        doc = self.db.channels.get(channel_id)
        if version is not None and doc is not None and _version_time(doc) == version:
            return True
        if version is not None and doc is None:
            return False  # the conditional write fails NotFound
        doc = self.db.read_channel(channel_id)
        return doc is not None and allowed(doc)

    def move_channel(self, channel_id: str, from_states: Iterable[str],
                     fields: dict[str, Any], version: datetime | None = None) -> bool:
        states = tuple(from_states)
        if not self._conditional(channel_id, lambda d: d.get("state") in states, version):
            return False
        self.db.set_channel_fields(channel_id, fields)
        return True

    def delete_channel(self, channel_id: str, state: str) -> bool:
        if not self._conditional(channel_id, lambda d: d.get("state") == state, None):
            return False
        self.db.delete_channel(channel_id)
        return True

    def claim_channel(self, channel_id: str, state: str, now: datetime,
                      until: datetime, claimant: str = "",
                      version: datetime | None = None) -> bool:
        def free(doc: dict[str, Any]) -> bool:
            claimed = doc.get("claimed_until")
            return doc.get("state") == state and (claimed is None or claimed <= now)

        if not self._conditional(channel_id, free, version):
            return False
        self.db.set_channel_fields(channel_id, {"claimed_until": until, "claimed_by": claimant})
        return True

    def claim_held(self, channel_id: str, claimant: str) -> Channel | None:
        doc = self.db.read_channel(channel_id)
        if doc is None or doc.get("claimed_by") != claimant:
            return None
        return _channel(channel_id, doc, _version_time(doc))

    def due_channels(self, state: str, before: datetime, limit: int,
                     after: RowCursor | None = None, shard: tuple[int, int] | None = None,
                     ) -> list[tuple[Channel, dict[str, Any]]]:
        db = self.db
        if shard is None:
            indexes = [db.channel_index.get(state)]
        else:  # an `in` over the shard values: merged in (expiration, id) order
            indexes = [db.shard_index.get((state, value)) for value in shard_values(*shard)]
        found: list[tuple[Any, str]] = []
        for index in indexes:
            if index is not None:
                found += [(index.value(i), i) for i in
                          index.scan(before, limit, include_null=False, start_after=after)]
        ids = [i for _, i in sorted(found)[:limit]]
        db.io.read_many([channel_path(i) for i in ids], CHANNELS)
        return [(_channel(i, db.channels[i], _version_time(db.channels[i])),
                 dict(db.channels[i])) for i in ids]

    def assign_shards(self, channel_ids: Sequence[str]) -> int:
        written = 0
        for channel_id in channel_ids:
            if channel_id in self.db.channels:  # `update`: a deleted record stays deleted
                self.db.set_channel_fields(channel_id, {"shard": channel_shard(channel_id)})
                written += 1
        return written

    def shard_backfill(self) -> dict[str, Any]:
        self.db.io.read(f"{RENEWER}/{SHARD_BACKFILL}")
        return dict(self.db.renewer_docs.get(SHARD_BACKFILL) or {})

    def save_shard_backfill(self, fields: dict[str, Any]) -> None:
        self.db.renewer_docs[SHARD_BACKFILL] = dict(fields)
        self.db.io.write(f"{RENEWER}/{SHARD_BACKFILL}")

    # -- the renewer's subscription queries ---------------------------------------

    def subscriptions_where(self, field: str, before: datetime, limit: int,
                            after: RowCursor | None = None,
                            ) -> list[tuple[Subscription, dict[str, Any]]]:
        db = self.db
        ids = db.sub_index[field].scan(before, limit, include_null=False, start_after=after)
        db.io.read_many([sub_path(i) for i in ids], SUBSCRIPTIONS)
        return [(_subscription(i, db.subs[i]), dict(db.subs[i])) for i in ids]

    def oldest_request(self) -> datetime | None:
        first = self.db.request_index.first()
        self.db.io.read_many([sub_path(first[1])] if first else [], SUBSCRIPTIONS)
        return first[0] if first else None

    # -- lifecycle entries --------------------------------------------------------

    def record_event(self, sub_id: str, kind: str, details: dict[str, Any],
                     now: datetime) -> int:
        db = self.db
        data = db.read_sub(sub_id)
        state = db.read_writer(sub_id)
        if data is None:
            raise LookupError(sub_id)
        first = int(state.get("change_seq") or 0)
        seq = first + 1
        db.changes.setdefault(sub_id, {})[seq] = {
            "seq": seq, "kind": kind, "event_id": None, "recurring_event_id": None,
            "fields": {}, "details": dict(details), "etag": None, "at": now,
            "expire_at": now + self._retention}
        db.io.write(change_path(sub_id, seq))
        update: dict[str, Any] = {"change_seq": seq}
        if self._outbox or state.get("published_seq") is not None:
            update.update(outbox_fields(state, outbox=True, first=first, change_seq=seq,
                                        now=now))
        db.merge_writer(sub_id, update)
        return seq


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
