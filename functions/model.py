"""Values that cross module boundaries: subscriptions, leases, pages, changes.

An event is the Google event resource as a plain dict; a snapshot is what the
store keeps for it: the resource plus `_deleted`, `_synced_at` and `_seq` (and
`_listed`, the full pass that last listed it, when one did).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

Event = dict[str, Any]
Snapshot = dict[str, Any]
# The snapshot field a full pass stamps on every live event it lists (`ListingProgress`).
LISTED = "_listed"

ACTIVE = "active"
PAUSED = "paused"
ERROR = "error"
DELETING = "deleting"
# Followed through an account until the calendar left its list (unshared, deleted,
# access below the policy): nothing syncs, the data and the feed are kept until
# `purge_at` (CALSYNC_FEED_RETENTION_DAYS later), then the renewer deletes them.
REMOVED = "removed"

STATUSES = (ACTIVE, PAUSED, ERROR, DELETING, REMOVED)
# An account's statuses (`accounts/{id}.status`): the same words.
ACCOUNT_STATUSES = (ACTIVE, ERROR, DELETING)

# A channel's states (`channels/{id}.state`); `active` is the same word as above.
PENDING = "pending"  # saved before `events.watch`; its resource id is learnt once
REPLACED = "replaced"  # a successor exists; still accepted until it expires
STOPPED = "stopped"
ABANDONED = "abandoned"  # credentials rejected: cannot be stopped, left to expire
CHANNEL_STATES = (PENDING, ACTIVE, REPLACED, STOPPED, ABANDONED)
# "Delivering" (DESIGN.md): at most one such channel per active subscription.
DELIVERING_STATES = (PENDING, ACTIVE)
# Notifications are acted on for these (a replaced channel until it expires).
ACCEPTING_STATES = (PENDING, ACTIVE, REPLACED)
# What a channel watches (`channels/{id}.kind`, absent on records from before kinds):
# a subscription's calendar (`events.watch`) or an account's calendar list
# (`calendarList.watch`, the record names `account_id` and no `sub_id`).
EVENTS_KIND = "events"
CALENDAR_LIST_KIND = "calendar_list"
CHANNEL_KINDS = (EVENTS_KIND, CALENDAR_LIST_KIND)

# Channel shards (issue 19, item 4): each channel record stores `shard`, derived from
# its id, in a fixed space, so that the renewer's fan-out count (a setting, at most
# SHARD_SPACE) can change without rewriting a record: fan-out task k of n renews the
# channels whose shard is one of `shard_values(k, n)`. At most 30 values per task
# (Firestore's limit on an `in` filter): n >= 2 keeps it at 16 or fewer.
SHARD_SPACE = 32

# How calsync acts as a subscription's owner (`credentials_ref`): domain-wide
# delegation, a sealed OAuth refresh token `oauth:<id>`, or (local emulator
# only) the owner's id as bearer token.
DWD_REF = "dwd"
BEARER_REF = "bearer"
OAUTH_PREFIX = "oauth:"
CALENDAR_SCOPES = ("https://www.googleapis.com/auth/calendar.events.readonly",)
# An account's calendar list (calendarList.list and .watch) needs a scope of its own:
# tokens for it ask for both; a subscription's keep asking for the events scope only,
# so a deployment whose delegation grants only that keeps working for subscriptions.
CALENDAR_LIST_SCOPE = "https://www.googleapis.com/auth/calendar.calendarlist.readonly"
ACCOUNT_SCOPES = (*CALENDAR_SCOPES, CALENDAR_LIST_SCOPE)

# A run is deferred only while `retry_at` is further away than this, since a
# follow-up scheduled for `retry_at` may be dispatched a little early.
RETRY_TOLERANCE = timedelta(seconds=2)
# Likewise for MIN_SYNC_INTERVAL: a follow-up dispatched this much before the
# interval ends runs rather than deferring again (clocks differ a little).
DEFER_TOLERANCE = timedelta(milliseconds=250)

CREATED = "created"
UPDATED = "updated"
DELETED = "deleted"
CHANGE_KINDS = (CREATED, UPDATED, DELETED)

# Lifecycle entries (DESIGN.md, "Accounts, lifecycle events, watermark"): entries of
# the feed of their own kind, ordered and de-duplicated with the event entries.
REAUTHORIZATION_REQUIRED_KIND = "reauthorization_required"
RESYNC_REQUIRED = "resync_required"
ERROR_KIND = "error"
RECOVERED = "recovered"
# Not the short type "deleted": that is an event's kind, and `kinds=deleted` must keep
# meaning deleted events (CloudEvents type `dev.calsync.subscription.deleted`).
DELETED_KIND = "subscription_deleted"
CALENDAR_ADDED = "calendar_added"
CALENDAR_REMOVED = "calendar_removed"
SUBSCRIPTION_EVENT_KINDS = (REAUTHORIZATION_REQUIRED_KIND, RESYNC_REQUIRED, ERROR_KIND,
                            RECOVERED, DELETED_KIND)
ACCOUNT_EVENT_KINDS = (CALENDAR_ADDED, CALENDAR_REMOVED)
LIFECYCLE_KINDS = SUBSCRIPTION_EVENT_KINDS + ACCOUNT_EVENT_KINDS
# Every kind the feed holds today; consumers ignore kinds they do not know.
FEED_KINDS = CHANGE_KINDS + LIFECYCLE_KINDS


@dataclass(frozen=True)
class LifecycleDraft:
    """A lifecycle entry before the store gives it its `seq` (`kind` one of
    `LIFECYCLE_KINDS`, `details` a small map)."""

    kind: str
    details: dict[str, Any] = field(default_factory=dict)


def error_event(reason: str | None, message: str) -> LifecycleDraft:
    """The entry of a subscription entering `error`: `reauthorization_required` when
    the user's grant is what failed (they must connect again), else `error`; both
    with the reason word and the message."""
    kind = REAUTHORIZATION_REQUIRED_KIND if reason == REAUTHORIZATION_REQUIRED_KIND else ERROR_KIND
    return LifecycleDraft(kind, {"reason": reason or "unknown", "message": message[:500]})


@dataclass(frozen=True)
class Subscription:
    """One watched calendar, as stored in `subscriptions/{id}`."""

    id: str
    calendar_id: str
    owner: str
    credentials_ref: str = ""
    status: str = ACTIVE
    last_error: str | None = None
    requested_gen: int = 0
    retry_at: datetime | None = None
    last_synced_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    # The OAuth scopes its credentials ask for (an account's identity adds the list's).
    scopes: tuple[str, ...] = CALENDAR_SCOPES


@dataclass(frozen=True)
class Channel:
    """One watch channel, as stored in `channels/{id}`."""

    id: str
    sub_id: str
    state: str
    resource_id: str | None = None
    expiration: datetime | None = None
    last_notification_at: datetime | None = None
    last_message_number: int = 0
    # The document's update time when it was read: writes conditioned on it
    # (last-notification bookkeeping) fail if anyone wrote the channel since.
    version: datetime | None = None
    kind: str = EVENTS_KIND
    account_id: str | None = None  # set for `calendar_list` channels only


@dataclass(frozen=True)
class SubscriptionRecord:
    """A subscription's documents as stored: its own, its `state/writer` and its
    current channel (None when it names none)."""

    id: str
    data: dict[str, Any]
    state: dict[str, Any]
    channel: dict[str, Any] | None


@dataclass(frozen=True)
class Transition:
    """What a conditional status change did: `changed` False when the
    subscription was already in the target status."""

    changed: bool
    previous: str
    generation: int = 0  # the request generation after the change
    event_seq: int = 0  # the seq of the lifecycle entry the change wrote (0: none)


@dataclass(frozen=True)
class Lease:
    """A run's claim on a subscription; `generation` is its fencing token."""

    subscription: Subscription
    generation: int
    claimed_gen: int
    sync_token: str | None
    first_sync: bool  # no sync of this subscription has ever committed
    started_at: datetime
    until: datetime
    full_resync: int = 0  # an operator's full-resync request this run serves (0: none)
    # `state/writer.complete_as_of` when the lease was taken: the start of the last
    # completed listing (its messages carry it as an attribute).
    complete_as_of: datetime | None = None
    change_seq: int = 0  # the feed's last `seq` when the lease was taken
    resume: ListingProgress | None = None  # a pass an earlier run left unfinished


@dataclass(frozen=True)
class ListingProgress:
    """Where a sync pass stands, saved with its page commits (fenced), so that a
    follow-up task, or the retry after a crash, goes on from the next page instead
    of listing again from the top (DESIGN.md: the sync token still moves only at
    the final commit).

    A full pass that found snapshots already stored (after a 410, an operator's
    full resync) stamps every live event it lists with `mark` (`_listed`), and then
    reconciles: live snapshots without the mark were not listed. So neither the
    listing nor the reconciliation holds a set of listed ids, and both survive the
    end of a task.
    """

    sync_token: str | None  # the token the pass lists from; None: a full listing
    page_token: str | None  # the next page to list; None once the listing is done
    mode: str  # "incremental", "full" or "full_after_410"
    claimed_gen: int  # the requests recorded before the listing began: what it serves
    full_resync: int = 0  # the operator's full-resync request it serves (0: none)
    fresh: bool = False  # a full pass that began on an empty store: nothing to reconcile
    mark: int = 0  # stamped as `_listed` on what the pass listed (0: no reconciliation)
    next_sync_token: str | None = None  # the listing's token, once done (committed last)
    reconciled_after: str | None = None  # reconciliation is done up to this event id
    # When the listing began (before its first request): the subscription's
    # `complete_as_of` once the pass completes, in whichever run that is.
    started_at: datetime | None = None


class LeaseOutcome(Enum):
    ACQUIRED = "acquired"
    BUSY = "busy"  # another run holds an unexpired lease
    NOT_FOUND = "not_found"  # no such subscription
    INACTIVE = "inactive"  # paused, in error or being deleted
    DEFERRED = "deferred"  # rate limited, or too soon after the last run, until `retry_at`
    IDLE = "idle"  # nothing requested since the last committed sync


@dataclass(frozen=True)
class LeaseAttempt:
    """What `acquire_lease` found; `lease` is set only when acquired."""

    outcome: LeaseOutcome
    lease: Lease | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class EventPage:
    """One page of `events.list`: exactly one of the two tokens is set."""

    items: tuple[Event, ...]
    next_page_token: str | None = None
    next_sync_token: str | None = None


@dataclass(frozen=True)
class ChangeDraft:
    """A change entry before the store gives it its `seq`."""

    kind: str
    event_id: str
    fields: dict[str, dict[str, Any]]
    etag: str | None = None
    recurring_event_id: str | None = None


@dataclass(frozen=True)
class EventWrite:
    """One snapshot to store, with the change entry to write beside it (if any).

    `snapshot` holds the resource and `_deleted`; the store stamps `_synced_at`
    and, when `change` is set, `_seq`.
    """

    event_id: str
    snapshot: Snapshot
    change: ChangeDraft | None = None
    # Only `_listed` moved (a full pass listed the event unchanged): the store may
    # write just that field; `snapshot` is still the whole of it.
    listed_only: bool = False

    @property
    def write_count(self) -> int:
        return 1 if self.change is None else 2


@dataclass(frozen=True)
class ChangeEntry:
    """One entry of the change feed, as stored in `changes/{seq:020d}`."""

    seq: int
    kind: str
    event_id: str | None  # None for lifecycle entries
    fields: dict[str, dict[str, Any]]
    etag: str | None
    recurring_event_id: str | None
    at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "event_id": self.event_id,
            "recurring_event_id": self.recurring_event_id,
            "fields": self.fields,
            "etag": self.etag,
            "at": self.at.isoformat() if self.at else None,
        }


def rfc3339(value: Any) -> Any:
    """A datetime as RFC 3339 in UTC ending in `Z`, always with microseconds (the
    `/v1` form); anything else unchanged."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _canonical(value: Any) -> Any:
    """Maps with their keys in one order: Firestore returns a map's keys in an order
    of its own, a commit holds them in the diff's, and the two wire copies of an
    entry must be the same bytes."""
    kind = type(value)
    if kind is dict:
        return {key: item if type(item) not in _NESTED else _canonical(item)
                for key, item in sorted(value.items())}
    if kind is list:
        return [item if type(item) not in _NESTED else _canonical(item) for item in value]
    return value


_NESTED = (dict, list)  # what `_canonical` descends into (scalars are returned as they are)


def entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored change entry (decoded: field names restored) in its one wire form: the
    changes route's items and each Pub/Sub message's data. Lifecycle entries add
    `details` (and have no `event_id`)."""
    shown = {
        "seq": int(entry["seq"]),
        "kind": entry.get("kind"),
        "event_id": entry.get("event_id"),
        "recurring_event_id": entry.get("recurring_event_id"),
        "fields": _canonical(entry.get("fields") or {}),
        "etag": entry.get("etag"),
        "at": rfc3339(entry.get("at")),
        "expire_at": rfc3339(entry.get("expire_at")),
    }
    if "details" in entry:
        shown["details"] = entry.get("details") or {}
    return shown


@dataclass(frozen=True)
class ChangePage:
    """Entries with `seq > after_cursor`, ascending; resume from `next_cursor`."""

    entries: tuple[ChangeEntry, ...]
    next_cursor: int


@dataclass(frozen=True)
class FinalCommit:
    """What the final commit saw: the request generation at commit time, and the
    lifecycle entries it wrote (decoded, with their `seq`)."""

    requested_gen: int
    entries: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SyncRequest:
    """The result of recording a notification's sync request.

    `needs_task` is true when this call turned "nothing pending" into "one
    request pending": the caller must make sure a task for `generation` is
    queued. When a request was already pending nothing was written at all.
    """

    found: bool
    needs_task: bool
    generation: int = 0
    last_run_started_at: datetime | None = None  # MIN_SYNC_INTERVAL counts from here


def channel_shard(channel_id: str) -> int:
    """The channel's shard: a stable hash of its id (ids are random, so shards fill
    evenly), in [0, SHARD_SPACE)."""
    return int.from_bytes(hashlib.sha256(channel_id.encode()).digest()[:4], "big") % SHARD_SPACE


def shard_values(shard: int, shards: int) -> tuple[int, ...]:
    """The stored shard values fan-out task `shard` of `shards` covers: every value
    once across the `shards` tasks."""
    if not 1 <= shards <= SHARD_SPACE or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards <= {SHARD_SPACE}")
    return tuple(range(shard, SHARD_SPACE, shards))


# -- accounts (DESIGN.md, "Accounts, lifecycle events, watermark") -------------------

# A user's access to a calendar on their list, weakest first (`accessRole`).
ACCESS_ROLES = ("freeBusyReader", "reader", "writerWithoutPrivateAccess", "writer", "owner")
# Which calendars of the list an account follows: every readable one, or only those
# the owner owns (the primary, and secondary calendars whose `dataOwner` is the owner).
ALL_CALENDARS = "all"
OWNED_CALENDARS = "owned"
CALENDAR_SELECTIONS = (ALL_CALENDARS, OWNED_CALENDARS)
# Below `reader` the events cannot be listed: "all" means readable.
READABLE_ROLE = "reader"


@dataclass(frozen=True)
class CalendarPolicy:
    """Which calendars of an account's list are followed: `calendars` (`all` readable or
    `owned`), at least `min_access_role`, and none of `exclude` (calendar ids)."""

    calendars: str = ALL_CALENDARS
    min_access_role: str = READABLE_ROLE
    exclude: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"calendars": self.calendars, "min_access_role": self.min_access_role,
                "exclude": list(self.exclude)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CalendarPolicy:
        """The policy as stored (missing parts take their defaults)."""
        data = data or {}
        return cls(calendars=str(data.get("calendars") or ALL_CALENDARS),
                   min_access_role=str(data.get("min_access_role") or READABLE_ROLE),
                   exclude=tuple(str(c) for c in data.get("exclude") or ()))


@dataclass(frozen=True)
class Account:
    """One connected account, as stored in `accounts/{id}`: its owner, the one sealed
    credential its subscriptions share, and the policy choosing its calendars."""

    id: str
    owner: str
    credentials_ref: str = ""
    policy: CalendarPolicy = field(default_factory=CalendarPolicy)
    status: str = ACTIVE
    last_error: str | None = None
    requested_gen: int = 0
    retry_at: datetime | None = None
    created_at: datetime | None = None

    def identity(self) -> Subscription:
        """The account as the credentials port sees an owner: the Calendar adapters
        build their clients per (owner, credentials)."""
        return Subscription(id=f"account-{self.id}", calendar_id="", owner=self.owner,
                            credentials_ref=self.credentials_ref, scopes=ACCOUNT_SCOPES)


@dataclass(frozen=True)
class AccountLease:
    """A calendar-list run's claim on an account; `generation` fences its writes (the
    subscriptions it follows and leaves included)."""

    account: Account
    generation: int
    claimed_gen: int
    sync_token: str | None  # None: list in full and reconcile both ways
    started_at: datetime
    until: datetime
    full_request: int = 0  # a full relisting request this run serves (0: none)


@dataclass(frozen=True)
class AccountLeaseAttempt:
    outcome: LeaseOutcome
    lease: AccountLease | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class CalendarListPage:
    """One page of `calendarList.list`: exactly one of the two tokens is set."""

    items: tuple[dict[str, Any], ...]
    next_page_token: str | None = None
    next_sync_token: str | None = None


@dataclass(frozen=True)
class Membership:
    """What following (or leaving) a calendar for an account did. `seq` is the
    `calendar_added` / `calendar_removed` entry it wrote (None: nothing changed, the
    entry was written before); `generation` the sync request it recorded when a
    removed subscription came back (0: none); `previous_ref` the credentials the
    subscription had before (an adopted one's own, to discard)."""

    sub_id: str
    seq: int | None = None
    previous_status: str = ACTIVE
    previous_ref: str = ""
    generation: int = 0
    last_error_reason: str | None = None
