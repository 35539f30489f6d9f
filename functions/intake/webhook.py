"""The webhook: turns a Google push notification into at most one queued sync.

A channel of kind `events` asks to sync its subscription's calendar; one of kind
`calendar_list` asks to list its account's calendars again (an account task).
The checks, the coalescing and the queueing are the same for both.

It never calls the Calendar API. A notification is acted on only if its
token verifies, its channel is known and delivering and its resource id
matches. The token is an HMAC of the channel id alone, so it is checked
before anything is read: a forged notification (token missing or wrong, for
a known channel or not) is answered 403 at the cost of no Firestore read.
A correctly signed notification for a channel we no longer know (deleted
with its subscription) is acknowledged (200) so Google stops sending it.

During a burst the hot path is reads only: a request already pending needs
no write, and the last-notification fields are written at most about once
per interval per channel across all instances (the write is conditional on
the channel document being unchanged since it was read).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from functions.errors import QueueUnavailable, ResourceMismatch, StoreError
from functions.intake import channel_tokens
from functions.model import ACCEPTING_STATES, CALENDAR_LIST_KIND, STOPPED, Channel, SyncRequest
from functions.ports import (
    AccountRequestStore,
    AccountTaskQueue,
    ChannelStore,
    RequestStore,
    TaskQueue,
)

RESOURCE_STATES = ("sync", "exists", "not_exists")
CHANNEL_CACHE_SIZE = 10_000
# calsync opens channels with UUID ids; anything else cannot be ours, and must
# never reach Firestore as a document path ("/", "..", "__x__" are special there).
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_RESOURCE_ID = re.compile(r"^[\x21-\x7e]{1,512}$")
MAX_MESSAGE_NUMBER = 2**63 - 1  # Firestore integers are int64

# A stopped channel's notification is acted on too: Google sends nothing on it after
# the stop, so what arrives is a push sent before it and delivered late, and it may
# be the only announcement of its change (made before the replacement's watch, its
# push delayed past the rotation's stop). Ignored, that change waited for the safety
# net: 81,300 s in the 10^5 simulation with no push dropped (issue 19). Acting on it
# is a request like any other: coalesced, and ignored on a paused or gone
# subscription. An abandoned channel's subscription has lost its credentials.
ACTED_ON_STATES = (*ACCEPTING_STATES, STOPPED)


@dataclass(frozen=True)
class Notification:
    channel_id: str
    resource_id: str
    resource_state: str
    message_number: int
    token: str | None


@dataclass(frozen=True)
class Outcome:
    """The HTTP answer and what happened, for the log line."""

    status: int
    reason: str
    result: str
    sub_id: str | None = None
    # Firestore document writes this notification caused, at most (queueing the task
    # of a request recorded earlier, after a failed or crashed enqueue, writes no
    # request counter although it is counted as one).
    writes: int = 0
    # Seconds from `handle`'s start until the sync task was created (None: no task
    # queued); with the handler's own time in the log line, it shows where a
    # notification's time went (bench/end_to_end.py reads both).
    queued_s: float | None = None


@dataclass(frozen=True)
class _Requests:
    """The request counters of one kind of target (`RequestStore`, `AccountRequestStore`)."""

    record: Callable[[str, datetime], SyncRequest]
    mark_queued: Callable[[str, int, datetime], None]
    enqueue_failed: Callable[[str, int], None]


@dataclass(frozen=True)
class _Target:
    """What a notification syncs: its id, the name logged (`Outcome.sub_id`), a word for
    it, its request counters and its task queue (None: not served by this service)."""

    id: str
    name: str
    what: str
    requests: _Requests | None
    queue: Callable[[str, int, datetime | None], None] | None


class BadNotification(ValueError):
    """Missing or malformed headers; the message is the one-line reason."""


class HeaderLookup(Protocol):
    """Case-insensitive header access (Werkzeug's `Headers`, or a plain dict in tests)."""

    def get(self, key: str, /) -> str | None: ...


def parse_notification(method: str, headers: HeaderLookup | Mapping[str, str]) -> Notification:
    """Validate Google's X-Goog-* headers; raises BadNotification."""
    def header(name: str) -> str | None:
        value = headers.get(name)
        return value.strip() if isinstance(value, str) else None

    channel_id = header("X-Goog-Channel-ID")
    if not channel_id:
        raise BadNotification("missing X-Goog-Channel-ID header")
    if not _CHANNEL_ID.match(channel_id):
        raise BadNotification("malformed X-Goog-Channel-ID header")
    state = header("X-Goog-Resource-State")
    if not state:
        raise BadNotification("missing X-Goog-Resource-State header")
    if state not in RESOURCE_STATES:
        raise BadNotification("unknown X-Goog-Resource-State (want sync, exists or not_exists)")
    resource_id = header("X-Goog-Resource-ID")
    if not resource_id:
        raise BadNotification("missing X-Goog-Resource-ID header")
    if not _RESOURCE_ID.match(resource_id):
        raise BadNotification("malformed X-Goog-Resource-ID header")
    number = header("X-Goog-Message-Number")
    if not number:
        raise BadNotification("missing X-Goog-Message-Number header")
    if not number.isascii() or not number.isdigit() or len(number) > 20:
        raise BadNotification("malformed X-Goog-Message-Number header (want an integer)")
    if int(number) > MAX_MESSAGE_NUMBER:
        raise BadNotification("X-Goog-Message-Number out of range (above 2^63-1)")
    token = header("X-Goog-Channel-Token")
    return Notification(channel_id, resource_id, state, int(number), token or None)


class WebhookService:
    def __init__(
        self,
        channels: ChannelStore,
        requests: RequestStore,
        queue: TaskQueue,
        keyring: Mapping[str, bytes],
        record_interval: float,
        min_sync_interval: float = 0.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        accounts: AccountRequestStore | None = None,
        account_queue: AccountTaskQueue | None = None,
        channel_cache_seconds: float = 5.0,
    ) -> None:
        """`channel_cache_seconds`: CALSYNC_CHANNEL_CACHE_SECONDS (`_lookup`)."""
        self._cache_seconds = channel_cache_seconds
        self._channels = channels
        self._requests = requests
        self._queue = queue
        self._accounts = accounts  # calendar-list channels' requests
        self._account_queue = account_queue
        self._keyring = keyring
        self._record_interval = timedelta(seconds=record_interval)
        self._min_interval = timedelta(seconds=min_sync_interval)
        self._clock = clock
        self._cache: dict[str, tuple[float, Channel]] = {}
        # A channel's subscription, kept past the cache: it never changes (`_begin_request`).
        self._subscriptions: dict[str, str] = {}

    def handle(self, note: Notification) -> Outcome:
        """Decide and act; raises StoreError (→ 503, Google redelivers)."""
        writes, started = [0], time.monotonic()
        queued: list[float] = []
        outcome = self._handle(note, writes, queued)
        return replace(outcome, writes=writes[0],
                       queued_s=round(queued[0] - started, 4) if queued else None)

    def _handle(self, note: Notification, writes: list[int], queued: list[float]) -> Outcome:
        # First, before any read: the token is computable from the channel id.
        if not note.token:
            return Outcome(403, "missing X-Goog-Channel-Token", "rejected_token")
        if not channel_tokens.verify(note.channel_id, note.token, self._keyring):
            return Outcome(403, "channel token does not verify", "rejected_token")
        # On a cache miss the channel must be read before a request is recorded; the
        # request's own read can go on meanwhile when its subscription is known (a
        # channel's subscription never changes).
        begun = self._begin_request(note)
        channel = self._lookup(note.channel_id)
        if channel is None:
            return Outcome(200, "unknown channel", "ignored_unknown_channel")
        if channel.state not in ACTED_ON_STATES:
            return Outcome(200, f"channel is {channel.state}", f"ignored_{channel.state}_channel",
                           channel.sub_id)
        if channel.resource_id is None:
            try:
                self._channels.learn_resource_id(channel.id, note.resource_id)
                writes[0] += 1
            except ResourceMismatch:
                return Outcome(403, "resource id does not match the channel",
                               "rejected_resource", channel.sub_id)
            channel = self._relearnt(channel, note.resource_id)
        elif channel.resource_id != note.resource_id:
            return Outcome(403, "resource id does not match the channel", "rejected_resource",
                           channel.sub_id)

        now = self._clock()
        outcome = self._request(channel, note, now, writes, queued, begun)
        # Bookkeeping after the request and its task, off the path to the sync: the
        # run does not wait for it (a failed request answers 503 without it; the
        # redelivery records it). Not for a stopped channel: nothing reads it there.
        if channel.state in ACCEPTING_STATES:
            writes[0] += self._maybe_record(channel, note, now)
        return outcome

    def _request(self, channel: Channel, note: Notification, now: datetime,
                 writes: list[int], queued: list[float],
                 begun: tuple[str, Callable[[datetime], SyncRequest]] | None = None,
                 ) -> Outcome:
        """Record the sync request a notification asks for and queue its task (when,
        on the monotonic clock, goes to `queued`)."""
        target = self._target(channel)
        if note.resource_state == "sync":
            return Outcome(200, "channel confirmed", "sync_message", target.name)
        if target.requests is None or target.queue is None:
            return Outcome(200, "calendar-list notifications are not served here",
                           "ignored_kind", target.name)
        if begun is not None and channel.kind != CALENDAR_LIST_KIND and begun[0] == target.id:
            request = begun[1](now)  # read while the channel was
        else:
            request = target.requests.record(target.id, now)
        if not request.found:
            return Outcome(200, f"{target.what} is gone", f"ignored_no_{target.what}",
                           target.name)
        if not request.needs_task:
            return Outcome(200, "sync already pending", "coalesced", target.name)
        # A new request (requested_gen written), or one recorded earlier whose task
        # is not known to exist (an enqueue failed or its caller died): queued now
        # under the request's own task name, so two callers queue one task.
        writes[0] += 1
        # Runs start no sooner than MIN_SYNC_INTERVAL after the previous one started:
        # that, with coalescing, bounds a burst to 1 + ceil(T / interval) runs.
        not_before = None
        if request.last_run_started_at is not None:
            earliest = request.last_run_started_at + self._min_interval
            not_before = earliest if earliest > now else None
        try:
            target.queue(target.id, request.generation, not_before)
        except QueueUnavailable:
            # The request stays recorded. Noting the failure lets Google's
            # redelivery of this 503 queue the task at once (the note is written
            # once per request, not per notification: an outage of the queue
            # costs no write per notification); if even that note fails, the
            # sweep re-enqueues requests left pending. Nothing is lost.
            with contextlib.suppress(StoreError):
                target.requests.enqueue_failed(target.id, request.generation)
                writes[0] += 1
            return Outcome(503, "could not queue the sync task", "enqueue_failed",
                           target.name)
        queued.append(time.monotonic())
        # Bookkeeping for `status` only; the task is queued either way.
        with contextlib.suppress(StoreError):
            target.requests.mark_queued(target.id, request.generation, now)
            writes[0] += 1
        return Outcome(200, "sync queued", "queued", target.name)

    def _target(self, channel: Channel) -> _Target:
        """What a channel's notification asks to sync: its subscription's calendar, or
        (a `calendar_list` channel) its account's calendar list."""
        if channel.kind == CALENDAR_LIST_KIND:
            account_id = channel.account_id or ""
            queue = self._account_queue
            return _Target(
                account_id, f"account:{account_id}", "account",
                _Requests(self._accounts.record_list_request, self._accounts.mark_queued,
                          self._accounts.enqueue_failed) if self._accounts else None,
                (lambda i, g, nb: queue.enqueue_account_sync(i, g, nb, origin="request"))
                if queue is not None else None)
        return _Target(
            channel.sub_id, channel.sub_id, "subscription",
            _Requests(self._requests.record_sync_request, self._requests.mark_queued,
                      self._requests.enqueue_failed),
            lambda i, g, nb: self._queue.enqueue_sync(i, g, nb, origin="request"))

    def _begin_request(self, note: Notification
                       ) -> tuple[str, Callable[[datetime], SyncRequest]] | None:
        """`RequestStore.begin_request` for the subscription of the notification's
        channel, when the channel is about to be read (not cached) and its subscription
        is known from an earlier read; else None. A notification the channel's state
        then turns away (paused, stopped, wrong resource) has cost that one read."""
        if note.resource_state == "sync":
            return None  # no request
        cached = self._cache.get(note.channel_id)
        if cached is not None and cached[0] > time.monotonic():
            return None  # no read of the channel to overlap
        sub_id = self._subscriptions.get(note.channel_id)
        if sub_id is None:
            return None
        return sub_id, self._requests.begin_request(sub_id)

    def _lookup(self, channel_id: str) -> Channel | None:
        """The channel, from a short-lived in-process cache when it is confirmed.

        Only delivering channels whose resource id is known are cached, for at
        most CALSYNC_CHANNEL_CACHE_SECONDS: acting on a channel stopped a moment ago is
        harmless (a request on a paused or deleted subscription is ignored),
        and Google may deliver on a stopped channel for a while anyway.
        """
        tick = time.monotonic()
        cached = self._cache.get(channel_id)
        if cached is not None and cached[0] > tick:
            return cached[1]
        channel = self._channels.get_channel(channel_id)
        if channel is None:
            self._subscriptions.pop(channel_id, None)  # gone: read nothing ahead for it
        elif channel.sub_id and channel.kind != CALENDAR_LIST_KIND:
            if len(self._subscriptions) >= CHANNEL_CACHE_SIZE:
                self._subscriptions.clear()
            self._subscriptions[channel_id] = channel.sub_id
        if channel is not None and channel.resource_id and channel.state in ACCEPTING_STATES:
            if len(self._cache) >= CHANNEL_CACHE_SIZE:
                self._cache.clear()
            self._cache[channel_id] = (tick + self._cache_seconds, channel)
        else:
            self._cache.pop(channel_id, None)
        return channel

    def _relearnt(self, channel: Channel, resource_id: str) -> Channel:
        """The channel after learning its resource id, read again once per channel:
        the write moved the document's version, which the bookkeeping write is
        conditioned on. Bookkeeping only: if the read fails, skip it this time."""
        learnt = replace(channel, resource_id=resource_id, version=None)
        try:
            return self._channels.get_channel(channel.id) or learnt
        except StoreError:
            return learnt

    def _maybe_record(self, channel: Channel, note: Notification, now: datetime) -> int:
        """Write the last-notification fields if due; returns the documents written.

        Due means the stored time is older than the interval. The write is
        conditional on the channel's version from the read, so when several
        instances find it due at once exactly one succeeds; the others note
        the time in their cached copy and leave it until the cache refreshes.
        Bookkeeping only: a failure never fails the notification.
        """
        last = channel.last_notification_at
        if last is not None and now - last < self._record_interval:
            return 0
        if channel.version is None:
            return 0  # version unknown: a later notification records it
        # Note the time in the cached copy first, so concurrent notifications
        # of this instance do not all try.
        self._update_cached(channel.id, now)
        try:
            version = self._channels.record_notification(channel, note.message_number, now)
        except StoreError:
            return 0
        if version is None:
            return 0  # another instance (or the renewer) wrote the channel first
        self._update_cached(channel.id, now, version)
        return 2 if channel.sub_id or channel.account_id else 1

    def _update_cached(self, channel_id: str, noted_at: datetime,
                       version: datetime | None = None) -> None:
        cached = self._cache.get(channel_id)
        if cached is not None:
            channel = replace(cached[1], last_notification_at=noted_at)
            if version is not None:
                channel = replace(channel, version=version)
            self._cache[channel_id] = (cached[0], channel)


__all__ = ["BadNotification", "Notification", "Outcome", "WebhookService",
           "parse_notification"]
