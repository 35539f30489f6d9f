"""Subscription lifecycle: subscribe, unsubscribe, pause, resume, status, channels.

Subscribing calls no Google API: it records the subscription with its first
sync request and queues that request's task. The run that serves it opens the
watch channel before it lists (`ensure_channel`), so whatever changes after
the listing is announced. Opening a channel follows DESIGN.md's order: the
record is saved `pending` (with a short expiry, so the renewer retries a
watch that never completed), then `events.watch` is called, then the response
is recorded and must match any resource id the webhook learnt meanwhile.

Every status change is conditional on the current status
(`LifecycleStore.transition`): a transition the status forbids raises
InvalidTransition, one to the status it already has does nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions import logs
from functions.config import Settings
from functions.errors import (
    CalendarError,
    CalsyncError,
    CredentialsRejected,
    InvalidTransition,
    QueueUnavailable,
    SubscriptionNotFound,
)
from functions.intake import channel_tokens
from functions.model import (
    ABANDONED,
    ACCEPTING_STATES,
    ACTIVE,
    DELETED_KIND,
    DELETING,
    ERROR,
    PAUSED,
    PENDING,
    RECOVERED,
    REMOVED,
    REPLACED,
    STOPPED,
    Channel,
    LifecycleDraft,
    Subscription,
    error_event,
)
from functions.model import ACTIVE as SUB_ACTIVE
from functions.ports import (
    ChannelKeeper,
    ChannelPort,
    Deletions,
    LifecycleStore,
    OpenedChannel,
    RequestStore,
    TaskQueue,
)

MAX_BACKOFF = timedelta(hours=1)
# Channel states only move forward (DESIGN.md, "Channels"): the states each one may
# be entered from. `stopped` and `abandoned` are final: such a channel never
# delivers again, whatever a watch still in flight answers.
FORWARD: dict[str, tuple[str, ...]] = {
    ACTIVE: (PENDING,),
    REPLACED: (ACTIVE,),
    STOPPED: (PENDING, ACTIVE, REPLACED),
    ABANDONED: (PENDING, ACTIVE, REPLACED),
}
# The reason a revoked or expired user grant puts in `last_error` (DESIGN.md,
# "Whose credentials failed"); a new grant resumes such a subscription.
REAUTHORIZATION_REQUIRED = "reauthorization_required"


@dataclass(frozen=True)
class SubscribeResult:
    """`created` False: the (calendar, owner) pair was subscribed already.
    `queued` False: the first sync's task could not be queued now; the
    renewer's sweep queues it."""

    subscription: Subscription
    created: bool
    queued: bool


@dataclass(frozen=True)
class Resync:
    """The request a resync recorded: done once `synced_gen >= generation` (and,
    for a full one, `full_resync_served >= full_request`)."""

    generation: int
    full_request: int = 0


@dataclass(frozen=True)
class SubscriptionStatus:
    """What `status` shows for one subscription (no secrets in here)."""

    id: str
    calendar_id: str
    owner: str
    status: str
    channel_id: str | None
    channel_state: str | None
    channel_expiration: datetime | None
    last_notification_at: datetime | None
    last_synced_at: datetime | None
    lag_seconds: float | None
    pending_requests: int
    change_seq: int
    last_error: str | None
    last_error_at: datetime | None
    renewal_error: str | None
    created_at: datetime | None = None
    credentials_ref: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # Every change Google applied before this instant is in the feed (the start of
    # the last completed listing; None before the first one completes).
    complete_as_of: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items()}


def backoff(attempts: int, first: timedelta) -> timedelta:
    """Exponential backoff after `attempts` failures, capped at MAX_BACKOFF."""
    return min(first * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _recovered(previous: str, data: dict[str, Any]) -> LifecycleDraft | None:
    """Resuming out of `error` (or out of a pause taken while in error: its
    `last_error` is still there) is `recovered`; any other resume says nothing."""
    if previous == ERROR or (previous == PAUSED and data.get("last_error")):
        return LifecycleDraft(RECOVERED, {"reason": data.get("last_error_reason") or "unknown"})
    return None


class SubscriptionService(ChannelKeeper, Deletions):
    def __init__(
        self,
        settings: Settings,
        subscriptions: LifecycleStore,
        channels: ChannelPort | None,
        requests: RequestStore,
        queue: TaskQueue,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._subs = subscriptions
        self._channels = channels
        self._requests = requests
        self._queue = queue
        self._clock = clock

    @property
    def store(self) -> LifecycleStore:
        return self._subs

    @property
    def pending_grace(self) -> timedelta:
        return timedelta(seconds=self._settings.pending_channel_grace)

    @property
    def first_backoff(self) -> timedelta:
        return timedelta(seconds=self._settings.renewal_backoff)

    # -- channels -------------------------------------------------------------

    def open_channel(self, sub: Subscription, attempts: int = 0) -> OpenedChannel | None:
        """Save pending, watch, record the response; None when the record stopped being
        `pending` while the watch was in flight. Raises calendar errors.

        A failed watch leaves its record `pending`, due at its next attempt (its
        `expiration` is the renewer's sort key) with a doubling backoff counted
        from `attempts` (the failures of the record it retries), so the renewer
        retries it. A record stopped by a pause, abandoned by the renewer (a watch
        slower than the pending grace) or deleted meanwhile is never made active:
        the channel the watch opened is closed again on Google's side.
        """
        if self._channels is None:
            raise CalendarError("this service cannot open channels (no Calendar access)")
        now = self._clock()
        channel_id = channel_tokens.new_channel_id()
        keys = self._settings.channel_token_keys
        saved = self._subs.save_channel(
            Channel(channel_id, sub.id, PENDING, expiration=now + self.pending_grace), now,
            token_key_id=next(iter(keys)))
        token = channel_tokens.sign(channel_id, keys)
        try:
            opened = self._channels.watch(sub, channel_id, token, self._settings.webhook_url,
                                          self._settings.channel_ttl)
        except CalendarError as err:
            tries = attempts + 1
            retry_at = now + backoff(tries, self.first_backoff)
            self._subs.set_channel(channel_id, {
                "renewal_attempts": tries, "expiration": retry_at, "next_attempt_at": retry_at,
                "last_error": f"watch failed: {type(err).__name__}: {err}"[:500]})
            raise
        if not self._subs.activate_channel(channel_id, sub.id, opened.resource_id,
                                           opened.expiration, version=saved):
            with contextlib.suppress(CalendarError):  # if this fails, it expires unheard
                self._channels.stop(sub, channel_id, opened.resource_id)
            logs.log("INFO", "channel closed", subscription=sub.id, channel_id=channel_id,
                     outcome="not_pending_any_more")
            return None
        return opened

    def ensure_channel(self, sub: Subscription) -> bool:
        """Open a channel unless the subscription has a delivering one; True if opened.

        Called by a sync run before it lists. A failed watch is left for the
        renewer (a pending record with a backoff) and the run goes on.
        """
        if self._subs.delivering_channels(sub.id):
            return False
        try:
            return self.open_channel(sub) is not None
        except CalendarError as err:
            logs.log("WARNING", "watch failed", subscription=sub.id, outcome="watch_failed",
                     error=f"{type(err).__name__}: {err}"[:300])
            return False

    def has_delivering(self, sub_id: str) -> bool | None:
        """True when the subscription has a delivering channel (the check
        `ensure_channel` starts with, on its own, so a run can make it while it
        takes its lease)."""
        return bool(self._subs.delivering_channels(sub_id))

    def move_channel(self, channel_id: str, to: str, *, seen: Channel | None = None,
                     **fields: Any) -> bool:
        """Move a channel record forward to `to` (never back: see FORWARD). `seen`: the
        record as read with its version; if its state may move to `to`, the write is
        conditioned on that version and needs no read first."""
        version = (seen.version if seen is not None and seen.state in FORWARD[to]
                   else None)
        return self._subs.move_channel(channel_id, FORWARD[to], {"state": to, **fields},
                                       version=version)

    def stop_channel(self, sub: Subscription, channel: Channel) -> None:
        """Stop on Google's side, then mark stopped; rejected credentials → abandoned.
        A `channel` read with its version is moved conditioned on it (no read)."""
        if channel.resource_id and self._channels is not None:
            try:
                self._channels.stop(sub, channel.id, channel.resource_id)
            except CredentialsRejected:
                self.move_channel(channel.id, ABANDONED, seen=channel)
                return
        self.move_channel(channel.id, STOPPED, seen=channel)

    # -- lifecycle ------------------------------------------------------------

    def subscribe(self, calendar_id: str, owner: str, credentials_ref: str,
                  labels: dict[str, str] | None = None, *,
                  queue_first_sync: bool = True) -> SubscribeResult:
        """Create the subscription with its first sync requested, and queue that sync
        (unless `queue_first_sync` is False: an account queues it once it follows the
        subscription, so `calendar_added` comes first in its feed; a stranded request of
        an existing one is not requeued either, as following it queues a run).

        The same (calendar, owner) again returns the existing subscription.
        Raises InvalidTransition while that one is being deleted.
        """
        candidate = Subscription(id=uuid.uuid4().hex, calendar_id=calendar_id, owner=owner,
                                 credentials_ref=credentials_ref, labels=dict(labels or {}))
        sub, created = self._subs.create_or_get(candidate, self._clock())
        if not created:
            if sub.status == DELETING:
                raise InvalidTransition(
                    f"subscription {sub.id} for this calendar is being deleted", DELETING)
            queued = queue_first_sync and self._requeue_stranded(sub)
            return SubscribeResult(sub, created=False, queued=queued)
        queued = queue_first_sync and self._queue_request(sub.id, 1)
        return SubscribeResult(sub, created=True, queued=queued)

    def queue_first_sync(self, sub_id: str) -> bool:
        """Queue the first sync a `subscribe(queue_first_sync=False)` recorded (the task
        it would have queued); a refused enqueue is left to the sweep."""
        return self._queue_request(sub_id, 1)

    def _requeue_stranded(self, sub: Subscription) -> bool:
        """A repeated subscribe (a client retrying a call whose answer it lost): if the
        recorded request has no task known and nobody is queueing it (the first call
        died before enqueueing), queue it now instead of leaving it to the sweep.
        Costs two reads; writes only the queued note."""
        if sub.status != SUB_ACTIVE:
            return False
        if sub.requested_gen <= int(self._subs.writer_state(sub.id).get("claimed_gen") or 0):
            return False  # nothing pending
        request = self._requests.record_sync_request(sub.id, self._clock())
        return request.needs_task and self._queue_request(sub.id, request.generation)

    def replace_credentials(self, sub_id: str, credentials_ref: str) -> bool:
        """New credentials for an existing subscription (a user connected again).

        The old sealed token is deleted by the caller's vault if it was one of
        ours; a subscription in `error` because its grant was revoked resumes.
        True when it was resumed.
        """
        sub = self._require(sub_id)
        self._subs.update(sub_id, {"credentials_ref": credentials_ref})
        if sub.status == ERROR and REAUTHORIZATION_REQUIRED in (sub.last_error or ""):
            return self.resume(sub_id)
        return False

    def _queue_request(self, sub_id: str, generation: int, origin: str = "request") -> bool:
        """Queue the task of a recorded request; False (left to the sweep) if the queue
        refuses."""
        try:
            self._queue.enqueue_sync(sub_id, generation, origin=origin)
        except QueueUnavailable as err:
            logs.log("WARNING", "enqueue failed", subscription=sub_id, outcome="enqueue_failed",
                     error=str(err))
            self._enqueue_failed(sub_id, generation)
            return False
        self._requests.mark_queued(sub_id, generation, self._clock())
        return True

    def _enqueue_failed(self, sub_id: str, generation: int) -> None:
        with contextlib.suppress(CalsyncError):  # else the grace runs out, or the sweep
            self._requests.enqueue_failed(sub_id, generation)

    def request_sync(self, sub_id: str, origin: str = "request") -> bool:
        """Record a request and queue its task unless one is queued; True if queued."""
        request = self._requests.record_sync_request(sub_id, self._clock())
        if not request.found or not request.needs_task:
            return False
        try:
            self._queue.enqueue_sync(sub_id, request.generation, origin=origin)
        except QueueUnavailable:
            self._enqueue_failed(sub_id, request.generation)
            raise
        self._requests.mark_queued(sub_id, request.generation, self._clock())
        return True

    def resync(self, sub_id: str, full: bool = False) -> Resync:
        """Sync an active subscription now (the CLI's and the API's `resync`).

        `full` asks the run to list everything and reconcile deletions (served
        inside its fenced lease). A request already pending gets a task queued
        now as well, in case its own is scheduled far ahead (a rate limit).
        Raises SubscriptionNotFound, InvalidTransition (not active) or
        QueueUnavailable (the request stays recorded for the sweep).
        """
        sub = self._require(sub_id)
        if sub.status != SUB_ACTIVE:
            hint = " (resume it first)" if sub.status in (PAUSED, ERROR) else ""
            raise InvalidTransition(
                f"subscription {sub_id} is {sub.status}: only an active one syncs{hint}",
                sub.status)
        full_request = self._requests.request_full_resync(sub_id) if full else 0
        now = self._clock()
        request = self._requests.record_sync_request(sub_id, now)
        if not request.found:
            raise SubscriptionNotFound(sub_id)
        origin = "resync" if request.needs_task else f"resync{int(now.timestamp() * 1000)}"
        try:
            self._queue.enqueue_sync(sub_id, request.generation, origin=origin)
        except QueueUnavailable:
            self._enqueue_failed(sub_id, request.generation)
            raise
        self._requests.mark_queued(sub_id, request.generation, now)
        return Resync(generation=request.generation, full_request=full_request)

    def requeue(self, sub_id: str, generation: int, origin: str) -> None:
        """Queue a task for an already recorded request (the sweep's repair)."""
        self._queue.enqueue_sync(sub_id, generation, origin=origin)
        self._requests.mark_queued(sub_id, generation, self._clock())

    def announce(self, sub_id: str, seq: int) -> None:
        """Queue a run for a subscription that just got a lifecycle entry, so it is
        published now rather than at the outbox sweep (an idle, paused or removed
        subscription's run only publishes). Named after the entry; a refused enqueue is
        left to the outbox sweep."""
        try:
            self._queue.enqueue_sync(sub_id, seq, origin="lifecycle")
        except QueueUnavailable as err:
            logs.log("WARNING", "enqueue failed", subscription=sub_id, outcome="enqueue_failed",
                     error=str(err))

    def requeue_quietly(self, sub_id: str, generation: int, origin: str) -> bool:
        """`requeue`, leaving a refused enqueue to the sweep (the request is recorded)."""
        return self._queue_request(sub_id, generation, origin=origin)

    def retire_channels(self, sub_id: str) -> None:
        """Stop every channel still accepting (a subscription that stops syncing);
        one that cannot be stopped expires on its own."""
        found = self._subs.get(sub_id)
        if found is None:
            return
        for channel in self._subs.channels_of(sub_id):
            if channel.state in ACCEPTING_STATES:
                with contextlib.suppress(CalendarError):
                    self.stop_channel(found[0], channel)

    def unsubscribe(self, sub_id: str, *, account_id: str | None = None,
                    queue_publication: bool = True) -> int | None:
        """Fence runs in flight, stop channels, delete everything; resumable.

        The first call appends `subscription_deleted` to the feed (with the fence,
        after everything a run committed). While the outbox has entries unpublished
        (that one included) the deletion waits, so a consumer always hears it: a
        publishing run is queued, and once everything is out the worker finishes
        the deletion (`finish_deletion`); the renewer resumes it otherwise, and
        deletes anyway once the outbox has been stuck `CALSYNC_DELETION_WAIT_SECONDS`.
        Returns the documents deleted, or None while it waits. `queue_publication`
        False: the caller publishes the message itself (the operator CLI), so no task
        races it to finish the deletion (the renewer's resumption still comes).

        A subscription an account follows is the account's to take down (`account_id`:
        the account doing so): unsubscribing it by hand would only last until the
        account lists its calendars in full again, so it is refused (InvalidTransition)
        with what to do instead. A `removed` one (kept for its retention) may go.
        """
        found = self._subs.get(sub_id)
        if found is None:
            raise SubscriptionNotFound(sub_id)
        sub, data = found
        owner_account = data.get("account_id")
        if (owner_account and owner_account != account_id
                and sub.status not in (DELETING, REMOVED)):
            raise InvalidTransition(
                f"subscription {sub_id} is followed through account {owner_account}: add its "
                "calendar to the account's policy `exclude`, or delete the account", sub.status)
        now = self._clock()
        self._subs.begin_delete(sub_id, now, event=LifecycleDraft(
            DELETED_KIND, {"calendar_id": sub.calendar_id, "owner": sub.owner}))
        for channel in self._subs.channels_of(sub_id):
            if channel.state in ACCEPTING_STATES:
                # Deleting anyway: an unstoppable channel expires and is then unknown.
                with contextlib.suppress(CalendarError):
                    self.stop_channel(sub, channel)
        if self._awaits_publication(sub_id):
            if queue_publication:
                with contextlib.suppress(CalsyncError):  # else the sweep queues the run
                    self._queue.enqueue_sync(sub_id, int(now.timestamp()) // 60,
                                             origin="deleting")
            logs.log("INFO", "unsubscribe waits for its message", subscription=sub_id,
                     outcome="deletion_waits")
            return None
        return self._subs.delete_tree(sub_id, sub.credentials_ref)

    def finish_deletion(self, sub_id: str, *, unpublished_ok: bool = False) -> int | None:
        """Delete a subscription being deleted once its messages are out (the worker
        calls it after publishing them; `unpublished_ok` when it has no topic)."""
        found = self._subs.get(sub_id)
        if found is None or found[0].status != DELETING:
            return None
        if not unpublished_ok and self._awaits_publication(sub_id):
            return None
        sub = found[0]
        for channel in self._subs.channels_of(sub_id):
            if channel.state in ACCEPTING_STATES:
                with contextlib.suppress(CalendarError):
                    self.stop_channel(sub, channel)
        return self._subs.delete_tree(sub_id, sub.credentials_ref)

    def _awaits_publication(self, sub_id: str) -> bool:
        """Entries wait unpublished (the outbox runs and lags), and it has not been
        stuck longer than the deletion wait."""
        state = self._subs.writer_state(sub_id)
        published = state.get("published_seq")
        if published is None or int(published) >= int(state.get("change_seq") or 0):
            return False
        since = state.get("publish_pending_since")
        wait = timedelta(seconds=self._settings.deletion_wait)
        if isinstance(since, datetime) and self._clock() - since > wait:
            logs.log("WARNING", "deleting with entries unpublished", subscription=sub_id,
                     outcome="deletion_wait_over", published_seq=int(published),
                     change_seq=int(state.get("change_seq") or 0))
            return False
        return True

    def pause(self, sub_id: str) -> bool:
        """Stop the channels and keep the data; True if it was not paused already."""
        sub = self._require(sub_id)
        moved = self._transition(sub_id, (SUB_ACTIVE, ERROR), PAUSED)
        if moved.changed:
            for channel in self._subs.channels_of(sub_id):
                if channel.state in ACCEPTING_STATES:
                    with contextlib.suppress(CalendarError):
                        self.stop_channel(sub, channel)
        return moved.changed

    def resume(self, sub_id: str) -> bool:
        """Back to `active` with a sync requested and queued (the run opens a channel).

        True if it was not active already. A failed enqueue is left to the sweep.
        """
        moved = self._transition(sub_id, (PAUSED, ERROR), SUB_ACTIVE,
                                 fields={"last_error": None, "retry_at": None,
                                         "enqueuing_at": self._clock()},
                                 request_sync=True, event=_recovered)
        if moved.changed:
            self._queue_request(sub_id, moved.generation, origin="request")
        return moved.changed

    def mark_error(self, sub: Subscription, message: str, reason: str | None = None) -> bool:
        """Permanent failure of an active subscription: `error` with a message and a
        stable reason word; channels left to expire (stopping them needs the
        rejected credentials)."""
        try:
            moved = self._transition(sub.id, (SUB_ACTIVE,), ERROR,
                                     fields={"last_error": message,
                                             "last_error_reason": reason,
                                             "last_error_at": self._clock()},
                                     event=lambda _, __: error_event(reason, message))
        except InvalidTransition:
            return False  # paused or being deleted meanwhile: that stands
        if moved.changed:
            for channel in self._subs.delivering_channels(sub.id):
                self.move_channel(channel.id, ABANDONED)
            if moved.event_seq and self._settings.pubsub_topic:
                # Nothing else runs for a subscription in error: publish its entry now
                # (if the queue refuses, the renewer's outbox sweep does).
                with contextlib.suppress(CalsyncError):
                    self._queue.enqueue_sync(sub.id, moved.event_seq, origin="lifecycle")
        return moved.changed

    def _transition(self, sub_id: str, allowed: tuple[str, ...], to: str,
                    fields: dict[str, Any] | None = None, request_sync: bool = False,
                    event: Any = None) -> Any:
        try:
            return self._subs.transition(sub_id, allowed, to, self._clock(), fields,
                                         request_sync=request_sync, event=event)
        except LookupError as err:
            raise SubscriptionNotFound(sub_id) from err

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
        delivering = self._subs.delivering_channels(sub.id)
        current = max(delivering, key=lambda c: (c.state == ACTIVE, c.expiration
                                                 or datetime.min.replace(tzinfo=UTC)),
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
            channel_state=current.state if current else None,
            channel_expiration=current.expiration if current else None,
            last_notification_at=data.get("last_notification_at"),
            last_synced_at=last_synced, lag_seconds=lag, pending_requests=pending,
            change_seq=int(state.get("change_seq") or 0), last_error=sub.last_error,
            last_error_at=data.get("last_error_at"), renewal_error=renewal_error,
            created_at=sub.created_at, credentials_ref=sub.credentials_ref,
            labels=dict(sub.labels), complete_as_of=state.get("complete_as_of"),
        )
