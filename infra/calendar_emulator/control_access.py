"""Control hooks for sharing, calendar lists and quotas.

Sharing goes through the store so that the ACL, each affected user's calendar
list and their list channels change together; quota settings replace the ones
the emulator started with until the next reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .control_fields import Handler, field_value
from .errors import bad_request, not_found
from .http_types import Request
from .store import Calendar

if TYPE_CHECKING:
    from .app import Emulator


def _existing_calendar(app: Emulator, body: dict[str, Any]) -> Calendar:
    """The calendar ``calendarId`` names; 404 when there is none (no primary is created)."""
    calendar_id = field_value(body, "calendarId", str)
    with app.store.lock:
        calendar = app.store.calendars.get(calendar_id)
    if calendar is None:
        raise not_found(f"No calendar {calendar_id}")
    return calendar


def _share(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    calendar = _existing_calendar(app, body)
    app.store.share(calendar, field_value(body, "user", str), field_value(body, "role", str))
    return _acl(app, {"calendarId": calendar.id}, request)


def _unshare(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    calendar = _existing_calendar(app, body)
    app.store.share(calendar, field_value(body, "user", str), "none")
    return _acl(app, {"calendarId": calendar.id}, request)


def _acl(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    calendar = _existing_calendar(app, body)
    with app.store.lock:
        return {"calendarId": calendar.id, "acl": {calendar.owner: "owner", **calendar.acl}}


def _delete_calendar(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.store.delete_calendar(_existing_calendar(app, body))


def _invalidate_list(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.store.invalidate_list_tokens(field_value(body, "user", str))


def _quotas(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    settings = app.quotas.settings
    return {
        "projectPerMinute": settings.project_per_minute,
        "userPerMinute": settings.user_per_minute,
        "windowSeconds": settings.window_seconds,
        "projectStatus": settings.project_status,
        "dayTimeZone": settings.day_time_zone,
    }


def _set_quotas(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """Replace the fields given; a null limit switches that limit off."""
    current = app.quotas.settings
    changes: dict[str, Any] = {}
    for key, attribute in (
        ("projectPerMinute", "project_per_minute"),
        ("userPerMinute", "user_per_minute"),
    ):
        if key in body:
            limit = field_value(body, key, int, None)
            if limit is not None and limit < 1:
                raise bad_request("invalid", f"{key} must be at least 1 or null.", key)
            changes[attribute] = limit
    window = field_value(body, "windowSeconds", float, current.window_seconds)
    if window <= 0:
        raise bad_request("invalid", "windowSeconds must be positive.", "windowSeconds")
    status = field_value(body, "projectStatus", int, current.project_status)
    if status not in (403, 429):
        raise bad_request("invalid", "projectStatus must be 403 or 429.", "projectStatus")
    zone = field_value(body, "dayTimeZone", str, current.day_time_zone)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_request("invalid", f"Unknown time zone {zone}.", "dayTimeZone") from None
    app.quotas.configure(
        app.quotas.with_changes(
            window_seconds=window, project_status=status, day_time_zone=zone, **changes
        )
    )
    return _quotas(app, body, request)


def _quota_usage(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return app.quotas.usage()


def _charge_quota(app: Emulator, body: dict[str, Any], request: Request) -> None:
    count = field_value(body, "count", int)
    if count < 1:
        raise bad_request("invalid", "count must be at least 1.", "count")
    app.quotas.charge(
        field_value(body, "project", str, None), field_value(body, "user", str, "other"), count
    )


ACCESS_ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "acl"): _share,
    ("DELETE", "acl"): _unshare,
    ("GET", "acl"): _acl,
    ("POST", "calendars/delete"): _delete_calendar,
    ("POST", "calendar-list/invalidate"): _invalidate_list,
    ("GET", "quotas"): _quotas,
    ("POST", "quotas"): _set_quotas,
    ("GET", "quotas/usage"): _quota_usage,
    ("POST", "quotas/charge"): _charge_quota,
}
