"""RFC 3339 parsing and formatting, and the start/end values of Calendar events."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ApiError, bad_request

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_rfc3339(value: str) -> datetime | None:
    """An aware datetime for an RFC 3339 timestamp with offset, else None."""
    match = _RFC3339.match(value.strip())
    if not match:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None


def format_rfc3339(moment: datetime) -> str:
    """UTC with milliseconds, the way Google writes ``updated`` and ``created``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_offset(moment: datetime) -> str:
    """``2025-01-02T09:00:00-05:00`` (no fraction), the way Google writes event times."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def zone(name: str | None) -> tzinfo | None:
    """The zone for an IANA name, None when unknown or empty."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class EventTime:
    """An event's ``start`` or ``end``: either an all-day date or an aware instant."""

    all_day: bool
    day: date | None
    instant: datetime | None
    time_zone: str | None

    @property
    def utc(self) -> datetime:
        """The instant in UTC; all-day dates count from midnight UTC."""
        if self.instant is not None:
            return self.instant.astimezone(UTC)
        assert self.day is not None
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)

    @property
    def local(self) -> datetime:
        """The wall-clock time in the event's zone (aware), or naive midnight for all-day."""
        if self.instant is None:
            assert self.day is not None
            return datetime(self.day.year, self.day.month, self.day.day)
        tz = zone(self.time_zone)
        return self.instant.astimezone(tz) if tz else self.instant

    def to_json(self) -> dict[str, str]:
        """The resource form, e.g. ``{"dateTime": ..., "timeZone": ...}``."""
        if self.all_day:
            assert self.day is not None
            return {"date": self.day.isoformat()}
        assert self.instant is not None
        out = {"dateTime": format_offset(self.instant)}
        if self.time_zone:
            out["timeZone"] = self.time_zone
        return out

    def shifted_to(self, local_start: datetime) -> EventTime:
        """The same kind of time at another (local, as produced by expansion) moment."""
        if self.all_day:
            return EventTime(True, local_start.date(), None, None)
        return EventTime(False, None, local_start, self.time_zone)


def parse_event_time(value: object, field: str) -> EventTime:
    """Validate and parse an event's ``start``/``end`` object (400 on bad input)."""
    if not isinstance(value, dict):
        raise bad_request("required", f"Missing {field} time.", field)
    time_zone = value.get("timeZone")
    if time_zone is not None and (
        not isinstance(time_zone, str) or (time_zone and zone(time_zone) is None)
    ):
        raise ApiError(400, "timeZoneInvalid", "Invalid time zone definition for start time.")
    if value.get("date"):
        raw = value["date"]
        try:
            day = date.fromisoformat(raw) if isinstance(raw, str) and len(raw) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise bad_request("invalid", f"Invalid {field} time.", field)
        return EventTime(True, day, None, None)
    raw = value.get("dateTime")
    if not raw:
        raise bad_request("required", f"Missing {field} time.", field)
    if not isinstance(raw, str):
        raise bad_request("invalid", f"Invalid {field} time.", field)
    instant = parse_rfc3339(raw)
    if instant is None:
        # Google accepts a local time when a timeZone names the zone.
        tz = zone(time_zone if isinstance(time_zone, str) else None)
        try:
            naive = datetime.fromisoformat(raw)
        except ValueError:
            naive = None
        if tz is None or naive is None or naive.tzinfo is not None:
            raise bad_request("invalid", f"Invalid {field} time.", field)
        instant = naive.replace(tzinfo=tz)
    return EventTime(False, None, instant, time_zone or None)


def instance_suffix(original: EventTime) -> str:
    """``20250102T140000Z`` for timed instances, ``20250102`` for all-day ones."""
    if original.all_day:
        assert original.day is not None
        return original.day.strftime("%Y%m%d")
    return original.utc.strftime("%Y%m%dT%H%M%SZ")


def parse_instance_suffix(suffix: str) -> datetime | date | None:
    """The original start encoded in an instance id suffix, or None."""
    try:
        if re.fullmatch(r"\d{8}T\d{6}Z", suffix):
            return datetime.strptime(suffix, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if re.fullmatch(r"\d{8}", suffix):
            return datetime.strptime(suffix, "%Y%m%d").date()
    except ValueError:
        return None
    return None


def duration(start: EventTime, end: EventTime) -> timedelta:
    """``end - start`` in absolute time."""
    return end.utc - start.utc
