"""events.insert / get / update / patch / delete, including writes to single instances."""

from __future__ import annotations

import copy
import re
import secrets
from datetime import datetime
from typing import Any

from . import recurrence
from .errors import ApiError, bad_request, not_found
from .store import Calendar, Store, StoredEvent
from .timeutil import EventTime, instance_suffix, parse_event_time, parse_instance_suffix

_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
# Server-owned fields: whatever the client sends for them is ignored.
_READ_ONLY = {
    "kind",
    "etag",
    "id",
    "htmlLink",
    "created",
    "updated",
    "creator",
    "recurringEventId",
    "originalStartTime",
}
# Changing these makes a new iCalendar revision.
_SEQUENCE_FIELDS = ("start", "end", "recurrence", "location")
_ORDER = (
    "kind",
    "etag",
    "id",
    "status",
    "htmlLink",
    "created",
    "updated",
    "summary",
    "description",
    "location",
    "colorId",
    "creator",
    "organizer",
    "start",
    "end",
    "endTimeUnspecified",
    "recurrence",
    "recurringEventId",
    "originalStartTime",
    "transparency",
    "visibility",
    "iCalUID",
    "sequence",
)


def new_event_id() -> str:
    """A random base32hex id like the ones Google generates."""
    # 130 random bits as 26 base32hex digits.
    number = secrets.randbits(130)
    return "".join(_BASE32HEX[(number >> shift) & 31] for shift in range(0, 130, 5))


def insert(
    store: Store,
    calendar: Calendar,
    user: str,
    body: object,
    lenient: bool = False,
    notify: bool = True,
) -> StoredEvent:
    """Create an event; 409 on a duplicate id, 400 on missing or invalid fields."""
    resource = _require_object(body)
    event_id = resource.get("id")
    if event_id is None:
        event_id = new_event_id()
    elif not isinstance(event_id, str) or not _ID.match(event_id):
        raise bad_request("invalid", "Invalid resource id value.", "id")
    with store.lock:
        if event_id in calendar.events:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        fields = {key: value for key, value in resource.items() if key not in _READ_ONLY}
        fields.setdefault("sequence", 0)
        out = _build(calendar, user, event_id, fields, created=None, lenient=lenient)
        return store.put_event(calendar, out, notify=notify)


def get(store: Store, calendar: Calendar, event_id: str) -> dict[str, Any]:
    """An event, a stored exception or a computed instance of a series; 404 otherwise."""
    with store.lock:
        stored = calendar.events.get(event_id)
        if stored is not None:
            return stored.resource
        instance = virtual_instance(calendar, event_id)
        if instance is None:
            raise not_found()
        return instance


def update(
    store: Store, calendar: Calendar, user: str, event_id: str, body: object, if_match: str | None
) -> StoredEvent:
    """PUT: replace every writable field (start and end are required)."""
    resource = _require_object(body)
    with store.lock:
        current = _current(calendar, event_id)
        _check_version(current, if_match)
        fields = {key: value for key, value in resource.items() if key not in _READ_ONLY}
        return _write(store, calendar, user, current, fields)


def patch(
    store: Store, calendar: Calendar, user: str, event_id: str, body: object, if_match: str | None
) -> StoredEvent:
    """PATCH: merge the given fields into the event (null clears a field)."""
    resource = _require_object(body)
    with store.lock:
        current = _current(calendar, event_id)
        _check_version(current, if_match)
        fields = {key: value for key, value in current.items() if key not in _READ_ONLY}
        for key, value in resource.items():
            if key in _READ_ONLY:
                continue
            if value is None:
                fields.pop(key, None)
            elif (
                isinstance(value, dict)
                and isinstance(fields.get(key), dict)
                and key not in ("start", "end")
            ):
                fields[key] = _merge(fields[key], value)
            else:
                fields[key] = value
        return _write(store, calendar, user, current, fields)


def delete(store: Store, calendar: Calendar, event_id: str, if_match: str | None) -> None:
    """Cancel an event, a series (with its exceptions) or one instance; 410 if already deleted."""
    with store.lock:
        stored = calendar.events.get(event_id)
        if stored is not None and stored.cancelled:
            raise ApiError(410, "deleted", "Resource has been deleted")
        current = _current(calendar, event_id)
        _check_version(current, if_match)
        cancelled = copy.deepcopy(current)
        cancelled["status"] = "cancelled"
        store.put_event(calendar, cancelled, notify=False)
        for exception_id in sorted(calendar.exceptions.get(event_id, ())):
            exception = calendar.events[exception_id]
            if not exception.cancelled:
                store.put_event(
                    calendar,
                    {**copy.deepcopy(exception.resource), "status": "cancelled"},
                    notify=False,
                )
    store.notify(calendar.id)


def virtual_instance(calendar: Calendar, instance_id: str) -> dict[str, Any] | None:
    """The unmodified instance ``<base>_<suffix>`` of a live series, if the series has it."""
    base, sep, suffix = instance_id.rpartition("_")
    if not sep:
        return None
    master = calendar.events.get(base)
    original = parse_instance_suffix(suffix)
    if (
        master is None
        or master.cancelled
        or master.recurrence is None
        or master.start is None
        or original is None
    ):
        return None
    if isinstance(original, datetime):
        if master.start.all_day:
            return None
        local = original.astimezone(master.start.local.tzinfo)
        candidate = EventTime(False, None, local, master.start.time_zone)
    else:
        if not master.start.all_day:
            return None
        candidate = EventTime(True, original, None, None)
    if not recurrence.contains(master.start, master.recurrence, candidate):
        return None
    return instance_resource(master, candidate)


def instance_resource(master: StoredEvent, original: EventTime) -> dict[str, Any]:
    """The resource of one unmodified instance of ``master`` starting at ``original``."""
    assert master.start is not None and master.end is not None
    length = master.end.utc - master.start.utc
    local_start = original.local
    if original.all_day:
        end = EventTime(True, (local_start + length).date(), None, None)
    else:
        end = EventTime(
            False,
            None,
            (original.utc + length).astimezone(local_start.tzinfo),
            master.end.time_zone,
        )
    out = {key: value for key, value in master.resource.items() if key != "recurrence"}
    out["id"] = f"{master.id}_{instance_suffix(original)}"
    out["start"] = original.to_json()
    out["end"] = end.to_json()
    out["recurringEventId"] = master.id
    out["originalStartTime"] = original.to_json()
    return _ordered(out)


def _require_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Parse Error")
    return body


def _current(calendar: Calendar, event_id: str) -> dict[str, Any]:
    stored = calendar.events.get(event_id)
    if stored is not None:
        return stored.resource
    instance = virtual_instance(calendar, event_id)
    if instance is None:
        raise not_found()
    return instance


def _check_version(current: dict[str, Any], if_match: str | None) -> None:
    if if_match and if_match.strip() not in ("*", current.get("etag")):
        raise ApiError(
            412,
            "conditionNotMet",
            "Precondition Failed",
            location_type="header",
            location="If-Match",
        )


def _write(
    store: Store, calendar: Calendar, user: str, current: dict[str, Any], fields: dict[str, Any]
) -> StoredEvent:
    if "sequence" not in fields or fields["sequence"] == current.get("sequence"):
        changed = any(fields.get(key) != current.get(key) for key in _SEQUENCE_FIELDS)
        fields["sequence"] = int(current.get("sequence", 0)) + (1 if changed else 0)
    if "recurringEventId" in current and "recurrence" in fields:
        raise bad_request("invalid", "Instances cannot have a recurrence.", "recurrence")
    out = _build(
        calendar,
        user,
        current["id"],
        fields,
        created=current.get("created"),
        lenient=False,
        keep=current,
    )
    return store.put_event(calendar, out)


def _build(
    calendar: Calendar,
    user: str,
    event_id: str,
    fields: dict[str, Any],
    created: str | None,
    lenient: bool,
    keep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    start = parse_event_time(fields.get("start"), "start")
    end = parse_event_time(fields.get("end"), "end")
    if (
        start.all_day != end.all_day
        or end.utc < start.utc
        or (start.all_day and end.utc == start.utc)
    ):
        raise bad_request("timeRangeEmpty", "The specified time range is empty.", "end")
    if "recurrence" in fields:
        fields["recurrence"] = recurrence.validate(fields["recurrence"])
        if not fields["recurrence"]:
            del fields["recurrence"]
        elif not start.all_day and not start.time_zone and not lenient:
            raise bad_request(
                "required", "Missing time zone definition for start time.", "start.timeZone"
            )
    status = fields.get("status", "confirmed")
    if status not in ("confirmed", "tentative", "cancelled"):
        raise bad_request("invalid", "Invalid value for: status", "status")
    keep = keep or {}
    out: dict[str, Any] = {
        "kind": "calendar#event",
        "id": event_id,
        "status": status,
        "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
        "creator": keep.get("creator", {"email": user, "self": True}),
        "organizer": fields.pop("organizer", None)
        or keep.get("organizer")
        or {"email": calendar.id, "displayName": calendar.summary, "self": True},
        "iCalUID": fields.pop("iCalUID", None) or keep.get("iCalUID") or f"{event_id}@google.com",
        "reminders": {"useDefault": True},
        "eventType": "default",
    }
    if created:
        out["created"] = created
    for key in ("recurringEventId", "originalStartTime"):
        if key in keep:
            out[key] = keep[key]
    out.update(fields)
    out["status"] = status
    # Stored in Google's canonical form: local times gain their offset.
    out["start"], out["end"] = start.to_json(), end.to_json()
    return _ordered(out)


def _ordered(resource: dict[str, Any]) -> dict[str, Any]:
    head = {key: resource[key] for key in _ORDER if key in resource}
    head.update((key, value) for key, value in resource.items() if key not in head)
    return head


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
