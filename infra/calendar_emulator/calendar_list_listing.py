"""calendarList.list and calendarList.get: a user's entries in Google's shape, paged, incremental.

Full listings walk entries in order of first appearance (the primary first);
incremental ones walk the list's change counter and report removed entries
with ``deleted: true``. As for events, a page token keeps the counter at page
one, which becomes the ``nextSyncToken``: a change made while a client pages
comes back in its next incremental call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .acl import at_least, parse_role
from .calendar_lists import ListEntry
from .errors import bad_request, full_sync_required, not_found
from .list_query import bool_param, int_param, last_param
from .listing import ListSettings
from .store import Store
from .tokens import (
    PageToken,
    SyncToken,
    check_sync_token,
    decode_page_token,
    decode_sync_token,
    encode_page_token,
    encode_sync_token,
    query_fingerprint,
)

DEFAULT_PAGE = 100
MAX_PAGE = 250
# The discovery document: these cannot accompany a sync token ("to ensure client state
# consistency"), and deleted and hidden entries are always included, so they cannot be false.
_FORBIDDEN_WITH_SYNC = ("minAccessRole", "showOwnOrganizationOnly")
_IMPLIED_WITH_SYNC = ("showDeleted", "showHidden")
_FULL, _SYNC = "calendarList", "calendarListSync"


@dataclass(frozen=True)
class CalendarListQuery:
    """The validated parameters of one calendarList.list call."""

    max_results: int
    page_token: str | None
    sync_token: str | None
    min_access_role: str | None
    show_deleted: bool
    own_organization_only: bool
    fingerprint: str


def parse_calendar_list_query(query: Mapping[str, list[str]]) -> CalendarListQuery:
    """Validate a calendarList.list query; 400 for the combinations Google refuses."""
    sync_token = last_param(query, "syncToken")
    if sync_token is not None:
        for name in _FORBIDDEN_WITH_SYNC:
            if name in query:
                raise bad_request(
                    "invalid", f"The parameter {name} cannot be used with syncToken.", name
                )
        for name in _IMPLIED_WITH_SYNC:
            if name in query and not bool_param(query, name):
                raise bad_request("invalid", f"{name} cannot be false with syncToken.", name)
    role = last_param(query, "minAccessRole")
    return CalendarListQuery(
        # Clamped like events.list's maxResults (unconfirmed: clamp or reject).
        max_results=min(int_param(query, "maxResults", DEFAULT_PAGE), MAX_PAGE),
        page_token=last_param(query, "pageToken") or None,
        sync_token=sync_token,
        min_access_role=None if role is None else parse_role(role, "minAccessRole"),
        show_deleted=bool_param(query, "showDeleted"),
        own_organization_only=bool_param(query, "showOwnOrganizationOnly"),
        fingerprint=query_fingerprint(query),
    )


def list_calendar_list(
    store: Store, user: str, query: CalendarListQuery, settings: ListSettings
) -> dict[str, Any]:
    """One page of calendarList.list for ``user``."""
    store.ensure_user(user)
    with store.lock:
        user_list = store.lists.of(user)
        key = f"calendarList:{user}"
        since, mode = 0, _FULL
        if query.sync_token is not None:
            token = decode_sync_token(query.sync_token)
            check_sync_token(token, key, store.list_epoch(user), user_list.counter)
            ttl = settings.sync_token_ttl
            if ttl is not None and store.clock.timestamp() - token.issued_at > ttl:
                raise full_sync_required()
            since, mode = token.counter, _SYNC
        page = _page_token(query, mode)
        snapshot = page.snapshot if page else user_list.counter
        since = page.since if page else since
        limit = min(query.max_results, settings.max_page_items or query.max_results)
        if mode == _SYNC:
            start = page.position if page else since + 1
            changed = (e for e in user_list.entries.values() if since < e.seq <= snapshot)
            walk = [(e.seq, e) for e in sorted(changed, key=lambda e: e.seq) if e.seq >= start]
        else:
            start = page.position if page else 0
            walk = [
                (position, entry)
                for position, entry in enumerate(_in_list_order(store, user))
                if position >= start and _shown(store, user, entry, query)
            ]
        items = [entry_resource(store, user, entry) for _, entry in walk[:limit]]
        out: dict[str, Any] = {"kind": "calendar#calendarList", "etag": f'"{user_list.counter}"'}
        if len(walk) > limit:
            out["nextPageToken"] = encode_page_token(
                PageToken(mode, snapshot, walk[limit][0], 0, query.fingerprint, since)
            )
        else:
            out["nextSyncToken"] = encode_sync_token(
                SyncToken(key, snapshot, store.list_epoch(user), store.clock.timestamp())
            )
        out["items"] = items
        return out


def get_entry(store: Store, user: str, calendar_id: str) -> dict[str, Any]:
    """calendarList.get: the user's entry for a calendar; 404 when it is not on the list."""
    primary = store.ensure_user(user)
    with store.lock:
        wanted = primary.id if calendar_id == "primary" else calendar_id
        entry = store.lists.entry(user, wanted)
        if entry is None or wanted not in store.calendars:
            raise not_found()
        return entry_resource(store, user, entry)


def entry_resource(store: Store, user: str, entry: ListEntry) -> dict[str, Any]:
    """A ``calendar#calendarListEntry``; a removed one carries only its identity (unconfirmed)."""
    calendar = store.calendars.get(entry.calendar_id)
    if entry.deleted or calendar is None:
        out: dict[str, Any] = {"kind": "calendar#calendarListEntry", "id": entry.calendar_id}
        out["deleted"] = True
        return _with_etag(out, entry.seq)
    out = {"kind": "calendar#calendarListEntry", "id": calendar.id, "summary": calendar.summary}
    if calendar.description:
        out["description"] = calendar.description
    out.update(
        timeZone=calendar.time_zone,
        colorId="14",
        backgroundColor="#9fe1e7",
        foregroundColor="#000000",
        accessRole=entry.role,
        defaultReminders=[],
        conferenceProperties={"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
    )
    if store.primary.get(user) == calendar.id:
        out["primary"] = True
    elif store.primary.get(calendar.owner) != calendar.id:
        out["dataOwner"] = calendar.owner  # set only for secondary calendars
    return _with_etag(out, entry.seq)


def _with_etag(resource: dict[str, Any], seq: int) -> dict[str, Any]:
    # The etag follows the content, so a change Google does not report still shows in it.
    digest = hashlib.sha1(json.dumps([seq, resource], sort_keys=True).encode()).hexdigest()
    return {"kind": resource.pop("kind"), "etag": f'"{int(digest[:13], 16)}"', **resource}


def _in_list_order(store: Store, user: str) -> list[ListEntry]:
    entries = store.lists.of(user).entries
    primary = entries.get(store.primary.get(user, ""))
    rest = sorted((e for e in entries.values() if e is not primary), key=lambda e: e.position)
    return [primary, *rest] if primary is not None else rest


def _shown(store: Store, user: str, entry: ListEntry, query: CalendarListQuery) -> bool:
    if entry.deleted:
        return query.show_deleted
    if query.min_access_role is not None and not at_least(entry.role, query.min_access_role):
        return False
    if query.own_organization_only:
        calendar = store.calendars.get(entry.calendar_id)
        owner = calendar.owner if calendar is not None else ""
        return owner.rpartition("@")[2] == user.rpartition("@")[2]
    return True


def _page_token(query: CalendarListQuery, mode: str) -> PageToken | None:
    if not query.page_token:
        return None
    page = decode_page_token(query.page_token, query.fingerprint)
    if page.mode != mode:
        raise bad_request("invalid", "Invalid page token value.", "pageToken")
    return page
