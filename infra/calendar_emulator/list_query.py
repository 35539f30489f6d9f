"""Parsing and validation of events.list / events.instances query parameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import ApiError, bad_request, invalid_param
from .timeutil import parse_rfc3339
from .tokens import query_fingerprint

MAX_PAGE = 2500
DEFAULT_PAGE = 250
_FORBIDDEN_WITH_SYNC = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "sharedExtendedProperty",
    "q",
    "timeMin",
    "timeMax",
    "updatedMin",
)


@dataclass(frozen=True)
class ListQuery:
    """The validated parameters of one events.list (or events.instances) call."""

    max_results: int
    page_token: str | None
    sync_token: str | None
    single_events: bool
    show_deleted: bool
    time_min: datetime | None
    time_max: datetime | None
    updated_min: datetime | None
    order_by: str | None
    text: tuple[str, ...]
    ical_uid: str | None
    private_properties: tuple[tuple[str, str], ...]
    shared_properties: tuple[tuple[str, str], ...]
    event_types: frozenset[str]
    fingerprint: str

    @property
    def filtered(self) -> bool:
        """Whether any filter beyond deletion visibility applies."""
        return bool(
            self.time_min
            or self.time_max
            or self.updated_min
            or self.text
            or self.ical_uid
            or self.private_properties
            or self.shared_properties
            or self.event_types
        )


def last_param(query: Mapping[str, list[str]], name: str) -> str | None:
    """The last value of a repeated-or-not query parameter."""
    values = query.get(name)
    return values[-1] if values else None


def bool_param(query: Mapping[str, list[str]], name: str) -> bool:
    """``true``/``false`` (absent or empty: false); 400 ``invalid`` otherwise."""
    value = last_param(query, name)
    if value is None or value == "":
        return False
    if value.lower() not in ("true", "false"):
        raise invalid_param(name, value)
    return value.lower() == "true"


def int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
    """A positive integer; 400 ``invalid`` otherwise."""
    value = last_param(query, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid_param(name, value) from None
    if number < 1:
        raise invalid_param(name, value)
    return number


def _time(query: Mapping[str, list[str]], name: str) -> datetime | None:
    value = last_param(query, name)
    if value is None:
        return None
    moment = parse_rfc3339(value)
    if moment is None:
        raise invalid_param(name, value)
    return moment


def _properties(query: Mapping[str, list[str]], name: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in query.get(name, []):
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise invalid_param(name, value)
        pairs.append((key, wanted))
    return tuple(pairs)


def parse_list_query(
    query: Mapping[str, list[str]], now: datetime, updated_min_max_age: float | None
) -> ListQuery:
    """Validate an events.list query as Google does (400/410 on the cases calendar-api.md lists)."""
    sync_token = last_param(query, "syncToken")
    if sync_token is not None:
        for name in _FORBIDDEN_WITH_SYNC:
            if name in query:
                raise bad_request(
                    "invalid", f"The parameter {name} cannot be used with syncToken.", name
                )
    order_by = last_param(query, "orderBy")
    single_events = bool_param(query, "singleEvents")
    if order_by is not None:
        if order_by not in ("startTime", "updated"):
            raise invalid_param("orderBy", order_by)
        if order_by == "startTime" and not single_events:
            raise bad_request(
                "badRequest",
                "The requested ordering is not available for the particular query.",
                "orderBy",
            )
    time_min, time_max = _time(query, "timeMin"), _time(query, "timeMax")
    if time_min is not None and time_max is not None and time_max <= time_min:
        raise bad_request("timeRangeEmpty", "The specified time range is empty.", "timeMax")
    updated_min = _time(query, "updatedMin")
    max_age = updated_min_max_age
    if (
        updated_min is not None
        and max_age is not None
        and updated_min < now - timedelta(seconds=max_age)
    ):
        raise ApiError(
            410,
            "updatedMinTooLongAgo",
            "The requested minimum modification time lies too far in the past.",
            domain="calendar",
            location_type="parameter",
            location="updatedMin",
        )
    text = last_param(query, "q")
    return ListQuery(
        # Clamped, not rejected, as calendar-api.md decides.
        max_results=min(int_param(query, "maxResults", DEFAULT_PAGE), MAX_PAGE),
        page_token=last_param(query, "pageToken") or None,
        sync_token=sync_token,
        single_events=single_events,
        show_deleted=bool_param(query, "showDeleted"),
        time_min=time_min,
        time_max=time_max,
        updated_min=updated_min,
        order_by=order_by,
        text=tuple(text.lower().split()) if text else (),
        ical_uid=last_param(query, "iCalUID"),
        private_properties=_properties(query, "privateExtendedProperty"),
        shared_properties=_properties(query, "sharedExtendedProperty"),
        event_types=frozenset(query.get("eventTypes", [])),
        fingerprint=query_fingerprint(query),
    )


def parse_instances_query(query: Mapping[str, list[str]]) -> ListQuery:
    """The parameters events.instances accepts."""
    time_min, time_max = _time(query, "timeMin"), _time(query, "timeMax")
    if time_min is not None and time_max is not None and time_max <= time_min:
        raise bad_request("timeRangeEmpty", "The specified time range is empty.", "timeMax")
    return ListQuery(
        max_results=min(int_param(query, "maxResults", DEFAULT_PAGE), MAX_PAGE),
        page_token=last_param(query, "pageToken") or None,
        sync_token=None,
        single_events=True,
        show_deleted=bool_param(query, "showDeleted"),
        time_min=time_min,
        time_max=time_max,
        updated_min=None,
        order_by=None,
        text=(),
        ical_uid=None,
        private_properties=(),
        shared_properties=(),
        event_types=frozenset(),
        fingerprint=query_fingerprint(query),
    )
