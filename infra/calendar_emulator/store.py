"""The in-memory model: users, calendars, their ACLs, events and each calendar's change counter.

Each write gives the event the next value of its calendar's change counter
(``seq``); sync tokens are positions on that counter. Events are never removed
(deletion keeps a cancelled tombstone), so incremental listings can report them.
Sharing and deleting calendars change users' calendar lists (``calendar_lists``).

Listeners hear resource keys: ``events:<calendarId>``, ``calendarList:<user>``
and ``acl:<calendarId>``, the keys watch channels are registered under.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .acl import parse_role
from .calendar_lists import CalendarLists
from .clock import Clock
from .errors import ApiError, bad_request, not_found
from .timeutil import EventTime, format_rfc3339, parse_event_time

ChangeListener = Callable[[str], None]
_HEAD = ("kind", "etag", "id", "status", "htmlLink", "created", "updated")


@dataclass(frozen=True)
class StoredEvent:
    """One version of an event (or exception item) as the API returns it."""

    resource: dict[str, Any]
    seq: int
    ordinal: int
    start: EventTime | None
    end: EventTime | None
    updated_ts: float
    json: str = field(repr=False)

    @property
    def id(self) -> str:
        """The event id."""
        return str(self.resource["id"])

    @property
    def cancelled(self) -> bool:
        """Deleted event or cancelled instance."""
        return self.resource.get("status") == "cancelled"

    @property
    def recurrence(self) -> list[str] | None:
        """The recurrence lines of a series master, else None."""
        return self.resource.get("recurrence") or None

    @property
    def master_id(self) -> str | None:
        """For exception items: the series the instance belongs to."""
        return self.resource.get("recurringEventId")

    def minimal_json(self) -> str:
        """The cancelled form listings use: only what Google guarantees."""
        return json.dumps(cancelled_view(self.resource))


def cancelled_view(resource: dict[str, Any]) -> dict[str, Any]:
    """``kind``/``etag``/``id``/``status`` plus the instance identity for exceptions."""
    out = {
        "kind": "calendar#event",
        "etag": resource.get("etag"),
        "id": resource["id"],
        "status": "cancelled",
    }
    if "recurringEventId" in resource:
        out["recurringEventId"] = resource["recurringEventId"]
        out["originalStartTime"] = resource["originalStartTime"]
    return out


class Calendar:
    """One calendar; mutated only by ``Store`` under its lock."""

    def __init__(
        self, calendar_id: str, owner: str, summary: str, time_zone: str, now: datetime
    ) -> None:
        self.id = calendar_id
        self.owner = owner
        self.summary = summary
        self.time_zone = time_zone
        self.description: str | None = None
        # Users other than the data owner and the role the ACL grants each.
        self.acl: dict[str, str] = {}
        self.counter = 0
        self.epoch = 0
        self.updated = now
        # Insertion order of ``events`` follows ``seq``: a write re-inserts the key at the end.
        self.events: dict[str, StoredEvent] = {}
        self.order: list[str] = []
        self.exceptions: dict[str, set[str]] = {}

    def resource(self) -> dict[str, Any]:
        """The ``calendar#calendar`` resource."""
        out: dict[str, Any] = {
            "kind": "calendar#calendar",
            "etag": f'"{self.epoch}{self.counter}"',
            "id": self.id,
            "summary": self.summary,
            "timeZone": self.time_zone,
        }
        if self.description:
            out["description"] = self.description
        return out


class Store:
    """All calendars; one re-entrant lock serialises every read and write."""

    def __init__(self, clock: Clock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._listeners: list[ChangeListener] = []
        self.lists = CalendarLists()
        self.reset()

    def reset(self) -> None:
        """Forget everything; sync tokens issued before become invalid."""
        with self.lock:
            self.generation = secrets.token_hex(4)
            self.calendars: dict[str, Calendar] = {}
            self.primary: dict[str, str] = {}
            self.lists.reset()

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(resource_key)`` after every change to a watchable collection."""
        self._listeners.append(listener)

    def notify(self, calendar_id: str) -> None:
        """Tell listeners (push delivery) that a calendar's events changed."""
        self.announce([f"events:{calendar_id}"])

    def announce(self, resource_keys: list[str]) -> None:
        """Tell listeners that these collections changed."""
        for key in resource_keys:
            for listener in self._listeners:
                listener(key)

    # -- users and calendars ----------------------------------------------------------

    def ensure_user(self, user: str) -> Calendar:
        """The user's primary calendar (id = user id), created on first use."""
        with self.lock:
            calendar_id = self.primary.get(user)
            if calendar_id is not None and calendar_id in self.calendars:
                return self.calendars[calendar_id]
            calendar = self.calendars.get(user)
            if calendar is None:
                calendar = Calendar(user, user, user, "UTC", self.clock.now())
                self.calendars[user] = calendar
            self.primary[user] = user
            # Not announced: to the user the primary calendar has always been there.
            self.lists.put(user, calendar.id, "owner")
            return calendar

    def resolve(self, user: str, calendar_id: str) -> Calendar:
        """The calendar for a path's ``calendarId`` (``primary`` is the user's); 404 if unknown."""
        with self.lock:
            if calendar_id == "primary":
                return self.ensure_user(user)
            calendar = self.calendars.get(calendar_id)
            if calendar is None:
                raise not_found()
            return calendar

    def create_calendar(
        self, owner: str, summary: str, time_zone: str, calendar_id: str | None = None
    ) -> Calendar:
        """A secondary calendar; 409 if the id is taken."""
        with self.lock:
            self.ensure_user(owner)
            calendar_id = calendar_id or f"{secrets.token_hex(13)}@group.calendar.google.com"
            if calendar_id in self.calendars:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
            calendar = Calendar(calendar_id, owner, summary, time_zone, self.clock.now())
            self.calendars[calendar_id] = calendar
            self.lists.put(owner, calendar_id, "owner")
        self.announce([f"calendarList:{owner}"])
        return calendar

    def delete_calendar(self, calendar: Calendar) -> None:
        """Remove a secondary calendar from the store and from every list holding it."""
        with self.lock:
            if self.primary.get(calendar.owner) == calendar.id:
                raise ApiError(
                    400, "cannotDeletePrimaryCalendar", "Cannot delete primary calendar."
                )
            if self.calendars.pop(calendar.id, None) is None:
                return
            users = [calendar.owner, *calendar.acl]
            changed = [user for user in users if self.lists.remove(user, calendar.id)]
        self.announce([f"calendarList:{user}" for user in changed] + [f"acl:{calendar.id}"])

    # -- access -------------------------------------------------------------------------

    def role_of(self, calendar: Calendar, user: str) -> str | None:
        """The user's role on the calendar, None without access."""
        if calendar.owner == user:
            return "owner"
        return calendar.acl.get(user)

    def peek_role(self, calendar_id: str, user: str) -> str | None:
        """``role_of`` by id without taking the lock (single dict reads), for push delivery.

        Push delivery holds its own lock and writers announce while holding this
        one, so taking it here could deadlock; a role read a moment early is harmless.
        """
        calendar = self.calendars.get(calendar_id)
        return None if calendar is None else self.role_of(calendar, user)

    def share(self, calendar: Calendar, user: str, role: str) -> None:
        """Grant ``user`` a role (``none`` unshares): the ACL and the user's list change."""
        if role != "none":
            parse_role(role, "role")
        if not user or user == calendar.owner:
            raise bad_request("invalid", "The data owner's access cannot be changed.", "user")
        with self.lock:
            if role == "none":
                if calendar.acl.pop(user, None) is None:
                    return
                listed = self.lists.remove(user, calendar.id)
            else:
                if calendar.acl.get(user) == role:
                    return
                calendar.acl[user] = role
                listed = self.lists.put(user, calendar.id, role)
        keys = [f"acl:{calendar.id}"]
        if listed:
            keys.append(f"calendarList:{user}")
        self.announce(keys)

    def list_epoch(self, user: str) -> str:
        """The epoch of the user's list tokens: changes on reset and on invalidation."""
        return f"{self.generation}.{self.lists.of(user).epoch}"

    def invalidate_list_tokens(self, user: str) -> None:
        """Every calendarList sync token issued to ``user`` so far now answers 410."""
        with self.lock:
            self.lists.invalidate(user)

    def epoch_of(self, calendar: Calendar) -> str:
        """The token epoch: changes on reset and on sync token invalidation."""
        return f"{self.generation}.{calendar.epoch}"

    def invalidate_sync_tokens(self, calendar: Calendar) -> None:
        """Every sync token issued for the calendar so far now answers 410."""
        with self.lock:
            calendar.epoch += 1

    # -- events -------------------------------------------------------------------------

    def put_event(
        self, calendar: Calendar, resource: dict[str, Any], notify: bool = True
    ) -> StoredEvent:
        """Store a new version of an event: next ``seq``, fresh ``etag`` and ``updated``."""
        with self.lock:
            calendar.counter += 1
            seq = calendar.counter
            # ``updated`` strictly increases per calendar so every change is visible in it.
            now = max(self.clock.now(), calendar.updated + timedelta(milliseconds=1))
            calendar.updated = now
            resource["updated"] = format_rfc3339(now)
            resource.setdefault("created", resource["updated"])
            resource["etag"] = f'"{int(now.timestamp() * 1000)}{seq:04d}"'
            head = {key: resource[key] for key in _HEAD if key in resource}
            head.update(resource)
            resource = head
            previous = calendar.events.pop(resource["id"], None)
            if previous is None:
                ordinal = len(calendar.order)
                calendar.order.append(resource["id"])
            else:
                ordinal = previous.ordinal
            stored = make_stored(resource, seq, ordinal, now.timestamp())
            calendar.events[stored.id] = stored
            if stored.master_id:
                calendar.exceptions.setdefault(stored.master_id, set()).add(stored.id)
        if notify:
            self.notify(calendar.id)
        return stored

    def get_event(self, calendar: Calendar, event_id: str) -> StoredEvent | None:
        """The stored version of an event or exception, deleted ones included."""
        return calendar.events.get(event_id)


def make_stored(resource: dict[str, Any], seq: int, ordinal: int, updated_ts: float) -> StoredEvent:
    """Wrap a resource, parsing its times once and serialising it once."""
    start = end = None
    if "start" in resource and "end" in resource:
        try:
            start = parse_event_time(resource["start"], "start")
            end = parse_event_time(resource["end"], "end")
        except ApiError:
            start = end = None
    return StoredEvent(resource, seq, ordinal, start, end, updated_ts, json.dumps(resource))
