"""Access roles: their order, and which role each API method needs on the calendar it names.

A calendar's data owner holds ``owner``; everyone else holds what the ACL grants
them, or nothing: a calendar the caller holds no role on answers 404, as if it
did not exist (Google does not reveal other users' calendars).
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError, bad_request, not_found

# Weakest first; ``writerWithoutPrivateAccess`` is a writer that cannot see private details.
ROLES = ("freeBusyReader", "reader", "writerWithoutPrivateAccess", "writer", "owner")
_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}

# method -> (weakest role allowed, the access level the 403 names)
_NEEDS: dict[str, tuple[str, str]] = {
    "calendars.get": ("freeBusyReader", "freeBusyReader"),
    "calendars.patch": ("owner", "owner"),
    "calendars.update": ("owner", "owner"),
    "calendars.delete": ("owner", "owner"),
    # A writer may read the ACL, only an owner may change it.
    "acl.watch": ("writer", "writer"),
    "events.list": ("reader", "reader"),
    "events.watch": ("reader", "reader"),
    "events.get": ("reader", "reader"),
    "events.instances": ("reader", "reader"),
    "events.insert": ("writerWithoutPrivateAccess", "writer"),
    "events.update": ("writerWithoutPrivateAccess", "writer"),
    "events.patch": ("writerWithoutPrivateAccess", "writer"),
    "events.delete": ("writerWithoutPrivateAccess", "writer"),
}


def rank(role: str | None) -> int:
    """0 for no access, then 1 (freeBusyReader) to 5 (owner)."""
    return _RANK.get(role, 0) if role else 0


def at_least(role: str | None, minimum: str) -> bool:
    """Whether ``role`` grants at least what ``minimum`` does."""
    return rank(role) >= _RANK[minimum]


def parse_role(value: object, name: str = "role") -> str:
    """A role named in a request; 400 ``invalid`` for anything else."""
    if not isinstance(value, str) or value not in _RANK:
        raise bad_request("invalid", f"Invalid value '{value}' for parameter '{name}'.", name)
    return value


# Google's documentation does not say what events.list answers a freeBusyReader; the
# emulator's default is 403 ("forbidden"), the setting freeBusyEvents=busyOnly serves
# the listing and its watch with each item reduced to its busy time (``busy_only``).
FREE_BUSY_EVENTS = ("forbidden", "busyOnly")
_BUSY_FIELDS = (
    "kind",
    "etag",
    "id",
    "status",
    "start",
    "end",
    "recurrence",
    "recurringEventId",
    "originalStartTime",
    "transparency",
)


def require(method: str, role: str | None, busy_only: bool = False) -> None:
    """Raise what Google answers when ``role`` is not enough for ``method`` on a calendar."""
    if role is None:
        raise not_found()
    if busy_only and role == "freeBusyReader" and method in ("events.list", "events.watch"):
        return
    minimum, level = _NEEDS.get(method, ("reader", "reader"))
    if not at_least(role, minimum):
        raise required_access_level(level)


def busy_only(page: dict[str, Any]) -> dict[str, Any]:
    """An events page as a freeBusyReader sees it under ``busyOnly``: times, no details."""
    items = [
        {key: item[key] for key in _BUSY_FIELDS if key in item} for item in page.get("items", [])
    ]
    return {**page, "items": items}


def required_access_level(level: str) -> ApiError:
    """403 ``requiredAccessLevel``, as Google words it (reported for owner and writer access)."""
    return ApiError(
        403, "requiredAccessLevel", f"You need to have {level} access to this calendar.", "calendar"
    )
