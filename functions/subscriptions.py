"""Subscription lifecycle: subscribe, unsubscribe, pause, resume, status.

Opening a channel always follows DESIGN.md's order: the channel record is
saved `pending` (with a short expiry, so the renewer retries a watch that
never completed), then `events.watch` is called, then the response is
recorded and must match any resource id the webhook learnt meanwhile.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions import channel_tokens
from functions.channel_store import (
    ABANDONED,
    ACTIVE,
    DELIVERING_STATES,
    PENDING,
    STOPPED,
    Channel,
    FirestoreChannelStore,
)
from functions.channels import ChannelPort, OpenedChannel
from functions.config import Settings
from functions.errors import CalendarError, CredentialsRejected
from functions.model import ERROR, PAUSED, Subscription
from functions.ports import RequestStore, TaskQueue
from functions.subscription_store import SubscriptionStore

# A pending channel whose watch never completed is retried after this long.
PENDING_GRACE = timedelta(minutes=2)


class SubscriptionNotFound(LookupError):
    """No subscription with that id."""


@dataclass(frozen=True)
class SubscriptionStatus:
    """What `status` shows for one subscription (no secrets in here)."""

    id: str
    calendar_id: str
    owner: str
    status: str
    channel_id: str | None
    channel_expiration: datetime | None
    last_notification_at: datetime | None
    last_synced_at: datetime | None
    lag_seconds: float | None
    pending_requests: int
    change_seq: int
    last_error: str | None
    renewal_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items()}


class SubscriptionService:
    def __init__(
        self,
        settings: Settings,
        subscriptions: SubscriptionStore,
        channel_store: FirestoreChannelStore,
        channels: ChannelPort,
        requests: RequestStore,
        queue: TaskQueue,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._subs = subscriptions
        self._channel_store = channel_store
        self._channels = channels
        self._requests = requests
        self._queue = queue
        self._clock = clock

    # -- channels -------------------------------------------------------------

    def open_channel(self, sub: Subscription) -> OpenedChannel:
        """Save pending, watch, record the response. Raises calendar errors."""
        now = self._clock()
        channel_id = channel_tokens.new_channel_id()
        self._channel_store.save_channel(
            Channel(channel_id, sub.id, PENDING, expiration=now + PENDING_GRACE), now)
        token = channel_tokens.sign(channel_id, self._settings.channel_token_keys)
        try:
            opened = self._channels.watch(sub, channel_id, token, self._settings.webhook_url,
                                          self._settings.channel_ttl)
        except CalendarError as err:
            # The Google side never opened: nothing will deliver on this id.
            self._subs.set_channel(channel_id, {"state": ABANDONED, "last_error": str(err)})
            raise
        self._subs.activate_channel(channel_id, sub.id, opened.resource_id, opened.expiration)
        return opened

    def stop_channel(self, sub: Subscription, channel: Channel) -> None:
        """Stop on Google's side, then mark stopped; rejected credentials → abandoned."""
        if channel.resource_id:
            try:
                self._channels.stop(sub, channel.id, channel.resource_id)
            except CredentialsRejected:
                self._subs.set_channel(channel.id, {"state": ABANDONED})
                return
        self._subs.set_channel(channel.id, {"state": STOPPED})

    # -- lifecycle ------------------------------------------------------------

    def subscribe(self, calendar_id: str, owner: str, credentials_ref: str,
                  sub_id: str | None = None) -> tuple[Subscription, OpenedChannel]:
        """Create the subscription, open its channel, queue the initial full sync."""
        sub = Subscription(id=sub_id or uuid.uuid4().hex, calendar_id=calendar_id, owner=owner,
                           credentials_ref=credentials_ref)
        self._subs.create(sub, self._clock())
        opened = self.open_channel(sub)
        self.request_sync(sub.id)
        return sub, opened

    def request_sync(self, sub_id: str, origin: str = "request") -> bool:
        """Record a request and queue its task unless one is pending; True if queued."""
        now = self._clock()
        request = self._requests.record_sync_request(sub_id, now)
        if not request.found or not request.needs_task:
            return False
        self._queue.enqueue_sync(sub_id, request.generation, origin=origin)
        self._requests.mark_queued(sub_id, request.generation, now)
        return True

    def requeue(self, sub_id: str, generation: int, origin: str) -> None:
        """Queue a task for an already recorded request (the sweep's repair)."""
        self._queue.enqueue_sync(sub_id, generation, origin=origin)
        self._requests.mark_queued(sub_id, generation, self._clock())

    def unsubscribe(self, sub_id: str) -> int:
        """Fence runs in flight, stop channels, delete everything; resumable."""
        found = self._subs.get(sub_id)
        if found is None:
            raise SubscriptionNotFound(sub_id)
        sub, _ = found
        self._subs.begin_delete(sub_id, self._clock())
        for channel in self._subs.channels_of(sub_id):
            if channel.state in DELIVERING_STATES:
                # Deleting anyway: an unstoppable channel expires and is then unknown.
                with contextlib.suppress(CalendarError):
                    self.stop_channel(sub, channel)
        return self._subs.delete_tree(sub_id, sub.credentials_ref)

    def pause(self, sub_id: str) -> None:
        sub = self._require(sub_id)
        self._subs.update(sub_id, {"status": PAUSED})
        for channel in self._subs.channels_of(sub_id):
            if channel.state in DELIVERING_STATES:
                self.stop_channel(sub, channel)

    def resume(self, sub_id: str) -> OpenedChannel:
        sub = self._require(sub_id)
        self._subs.update(sub_id, {"status": "active", "last_error": None, "retry_at": None})
        opened = self.open_channel(sub)
        self.request_sync(sub_id)
        return opened

    def mark_error(self, sub: Subscription, reason: str) -> None:
        """Permanent failure: `error` with a reason; channels left to expire."""
        self._subs.update(sub.id, {"status": ERROR, "last_error": reason,
                                   "last_error_at": self._clock()})
        for channel in self._subs.channels_of(sub.id):
            if channel.state in DELIVERING_STATES:
                self._subs.set_channel(channel.id, {"state": ABANDONED})

    def _require(self, sub_id: str) -> Subscription:
        found = self._subs.get(sub_id)
        if found is None:
            raise SubscriptionNotFound(sub_id)
        return found[0]

    # -- status ---------------------------------------------------------------

    def status(self, sub_id: str) -> SubscriptionStatus:
        found = self._subs.get(sub_id)
        if found is None:
            raise SubscriptionNotFound(sub_id)
        return self._status(*found)

    def list_status(self) -> list[SubscriptionStatus]:
        return [self._status(sub, data) for sub, data in self._subs.list_all()]

    def _status(self, sub: Subscription, data: dict[str, Any]) -> SubscriptionStatus:
        state = self._subs.writer_state(sub.id)
        channels = self._subs.channels_of(sub.id)
        live = [c for c in channels if c.state == ACTIVE]
        current = max(live, key=lambda c: c.expiration or datetime.min.replace(tzinfo=UTC),
                      default=None)
        renewal_error = None
        if current is not None:
            doc = self._subs.channel_doc(current.id)
            if doc.get("last_error"):
                renewal_error = f"{doc['last_error']} (attempt {doc.get('renewal_attempts', 0)})"
        requested = int(data.get("requested_gen") or 0)
        synced = int(state.get("synced_gen") or 0)
        last_synced = data.get("last_synced_at")
        pending = max(requested - synced, 0)
        lag = None
        if pending and data.get("requested_at"):
            lag = (self._clock() - data["requested_at"]).total_seconds()
        elif last_synced is not None:
            lag = 0.0
        return SubscriptionStatus(
            id=sub.id, calendar_id=sub.calendar_id, owner=sub.owner, status=sub.status,
            channel_id=current.id if current else None,
            channel_expiration=current.expiration if current else None,
            last_notification_at=data.get("last_notification_at"),
            last_synced_at=last_synced, lag_seconds=lag, pending_requests=pending,
            change_seq=int(state.get("change_seq") or 0), last_error=sub.last_error,
            renewal_error=renewal_error,
        )
