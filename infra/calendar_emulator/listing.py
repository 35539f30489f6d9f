"""events.list and events.instances: full, incremental and sorted listings with stable paging.

Full listings walk events in creation order; incremental ones walk the change
counter. A page token holds the position plus the counter at page one
(``snapshot``), which becomes the ``nextSyncToken``: whatever changes while a
client pages is reported again by its next incremental call, never lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from . import recurrence
from .errors import bad_request, full_sync_required, not_found
from .event_writes import instance_resource
from .list_query import ListQuery
from .store import Calendar, Store, StoredEvent
from .timeutil import EventTime, format_rfc3339, instance_suffix
from .tokens import (
    PageToken,
    SyncToken,
    check_sync_token,
    decode_page_token,
    decode_sync_token,
    encode_page_token,
    encode_sync_token,
)

# (start, updated, serialised item): the sort keys orderBy needs, and the item.
Item = tuple[float, float, str]
Entry = tuple[int, Callable[[], list[Item]]]


@dataclass(frozen=True)
class ListSettings:
    """Knobs the control API can turn."""

    max_page_items: int | None = None
    sync_token_ttl: float | None = None


@dataclass(frozen=True)
class Listing:
    """A serialised events page and how many items it holds."""

    body: str
    count: int


def list_events(
    store: Store,
    calendar: Calendar,
    query: ListQuery,
    settings: ListSettings,
    access_role: str = "owner",
) -> Listing:
    """One page of events.list, for a caller holding ``access_role`` on the calendar."""
    with store.lock:
        since = 0
        if query.sync_token is not None:
            token = decode_sync_token(query.sync_token)
            check_sync_token(token, calendar.id, store.epoch_of(calendar), calendar.counter)
            if (
                settings.sync_token_ttl is not None
                and store.clock.timestamp() - token.issued_at > settings.sync_token_ttl
            ):
                raise full_sync_required()
            since = token.counter
            mode = "sync"
        else:
            mode = "sorted" if query.order_by else "full"
        page = _page_token(query, mode)
        snapshot = page.snapshot if page else calendar.counter
        since = page.since if page else since
        limit = min(query.max_results, settings.max_page_items or query.max_results)
        render = _Renderer(calendar, query)
        if mode == "sync":
            start = page.position if page else since + 1
            entries: Iterable[Entry] = _changed_since(calendar, start, snapshot, render.changed)
        elif mode == "sorted":
            entries = _sorted(calendar, query, render)
            start = page.position if page else 0
            entries = ((pos, produce) for pos, produce in entries if pos >= start)
        else:
            start = page.position if page else 0
            entries = _creation_order(calendar, start, render.current)
        items, resume = _paginate(entries, page.sub if page else 0, limit)
        next_page = next_sync = None
        if resume is not None:
            next_page = encode_page_token(
                PageToken(mode, snapshot, resume[0], resume[1], query.fingerprint, since)
            )
        else:
            next_sync = encode_sync_token(
                SyncToken(calendar.id, snapshot, store.epoch_of(calendar), store.clock.timestamp())
            )
        return Listing(_envelope(calendar, items, next_page, next_sync, access_role), len(items))


def list_instances(
    store: Store,
    calendar: Calendar,
    event_id: str,
    query: ListQuery,
    settings: ListSettings,
    access_role: str = "owner",
) -> Listing:
    """One page of events.instances for a series."""
    with store.lock:
        master = calendar.events.get(event_id)
        if master is None or master.cancelled:
            raise not_found()
        page = _page_token(query, "instances")
        start = page.position if page else 0
        limit = min(query.max_results, settings.max_page_items or query.max_results)
        render = _Renderer(calendar, query)
        produced = render.series(master) if master.recurrence else [render.item(master)]
        entries = (
            (pos, partial(_single, item)) for pos, item in enumerate(produced) if pos >= start
        )
        items, resume = _paginate(entries, 0, limit)
        next_page = None
        if resume is not None:
            next_page = encode_page_token(
                PageToken("instances", calendar.counter, resume[0], 0, query.fingerprint, 0)
            )
        return Listing(_envelope(calendar, items, next_page, None, access_role), len(items))


def _page_token(query: ListQuery, mode: str) -> PageToken | None:
    if not query.page_token:
        return None
    page = decode_page_token(query.page_token, query.fingerprint)
    if page.mode != mode:
        raise bad_request("invalid", "Invalid page token value.", "pageToken")
    return page


def _creation_order(
    calendar: Calendar, start: int, render: Callable[[StoredEvent], list[Item]]
) -> Iterator[Entry]:
    order, events = calendar.order, calendar.events
    for position in range(start, len(order)):
        record = events.get(order[position])
        if record is not None:
            yield position, partial(render, record)


def _changed_since(
    calendar: Calendar, start: int, snapshot: int, render: Callable[[StoredEvent], list[Item]]
) -> Iterator[Entry]:
    # ``events`` is ordered by seq, so walk back from the newest change until ``start``.
    changed = []
    for record in reversed(calendar.events.values()):
        if record.seq < start:
            break
        if record.seq <= snapshot:
            changed.append(record)
    for record in reversed(changed):
        yield record.seq, partial(render, record)


def _sorted(calendar: Calendar, query: ListQuery, render: _Renderer) -> Iterator[Entry]:
    items: list[Item] = []
    for record in calendar.events.values():
        items.extend(render.current(record))
    key = 0 if query.order_by == "startTime" else 1
    items.sort(key=lambda item: item[key])
    for position, item in enumerate(items):
        yield position, partial(_single, item)


def _single(item: Item) -> list[Item]:
    return [item]


def _paginate(
    entries: Iterable[Entry], skip: int, limit: int
) -> tuple[list[str], tuple[int, int] | None]:
    """Fill a page; the resume point is (entry position, items of that entry already sent)."""
    items: list[str] = []
    first = True
    for position, produce in entries:
        if len(items) >= limit:
            return items, (position, 0)
        produced = produce()
        offset = skip if first else 0
        first = False
        if offset:
            produced = produced[offset:]
        room = limit - len(items)
        if len(produced) > room:
            items.extend(item[2] for item in produced[:room])
            return items, (position, offset + room)
        items.extend(item[2] for item in produced)
    return items, None


def _envelope(
    calendar: Calendar,
    items: list[str],
    next_page: str | None,
    next_sync: str | None,
    access_role: str,
) -> str:
    head: dict[str, object] = {
        "kind": "calendar#events",
        "etag": f'"{calendar.counter}"',
        "summary": calendar.summary,
        "updated": format_rfc3339(calendar.updated),
        "timeZone": calendar.time_zone,
        "accessRole": access_role,
        "defaultReminders": [],
    }
    if next_page:
        head["nextPageToken"] = next_page
    if next_sync:
        head["nextSyncToken"] = next_sync
    text = json.dumps(head)
    return text[:-1] + ', "items": [' + ", ".join(items) + "]}"


class _Renderer:
    """Turns stored records into listed items for one query."""

    def __init__(self, calendar: Calendar, query: ListQuery) -> None:
        self.calendar = calendar
        self.query = query
        self.updated_min = query.updated_min.timestamp() if query.updated_min else None
        self.after = query.time_min
        self.before = query.time_max

    def item(self, record: StoredEvent) -> Item:
        """The listed form of one record (cancelled ones minimal)."""
        start = record.start.utc.timestamp() if record.start else 0.0
        return (
            start,
            record.updated_ts,
            record.minimal_json() if record.cancelled else record.json,
        )

    # -- full listings ---------------------------------------------------------------------

    def current(self, record: StoredEvent) -> list[Item]:
        """Items a full listing shows for one record."""
        query = self.query
        if not query.filtered and not query.single_events:
            if not record.cancelled:
                return (
                    [(0.0, record.updated_ts, record.json)]
                    if query.order_by is None
                    else [self.item(record)]
                )
            return [self.item(record)] if self._cancelled_visible(record) else []
        if query.single_events:
            if record.master_id is not None:
                master = self.calendar.events.get(record.master_id)
                # Exceptions of a live series are listed through the series' expansion.
                if master is not None and not master.cancelled and master.recurrence:
                    return []
                if record.cancelled and not (query.show_deleted or self.updated_min is not None):
                    return []
            elif record.recurrence:
                if record.cancelled or not self._matches(record):
                    return []
                return self.series(record)
        if record.cancelled and not self._cancelled_visible(record):
            return []
        if not self._matches(record) or not self._in_window(record):
            return []
        return [self.item(record)]

    def _cancelled_visible(self, record: StoredEvent) -> bool:
        query = self.query
        if self.updated_min is not None or query.show_deleted:
            # With singleEvents, a deleted series itself is not listed, only cancelled instances.
            return not (query.single_events and record.recurrence)
        if record.master_id is not None and not query.single_events:
            master = self.calendar.events.get(record.master_id)
            return master is not None and not master.cancelled
        return False

    def _matches(self, record: StoredEvent) -> bool:
        query, resource = self.query, record.resource
        if self.updated_min is not None and record.updated_ts < self.updated_min:
            return False
        if query.ical_uid is not None and resource.get("iCalUID") != query.ical_uid:
            return False
        if query.event_types and resource.get("eventType", "default") not in query.event_types:
            return False
        for scope, pairs in (
            ("private", query.private_properties),
            ("shared", query.shared_properties),
        ):
            values = (resource.get("extendedProperties") or {}).get(scope) or {}
            if any(values.get(key) != wanted for key, wanted in pairs):
                return False
        if query.text:
            haystack = (
                " ".join(
                    str(resource.get(key, "")) for key in ("summary", "description", "location")
                )
                + " "
                + " ".join(
                    f"{person.get('email', '')} {person.get('displayName', '')}"
                    for person in [
                        *(resource.get("attendees") or []),
                        resource.get("organizer") or {},
                    ]
                    if isinstance(person, dict)
                )
            )
            haystack = haystack.lower()
            if not all(term in haystack for term in query.text):
                return False
        return True

    def _in_window(self, record: StoredEvent) -> bool:
        if self.after is None and self.before is None:
            return True
        if record.start is None or record.end is None:
            return False
        if record.recurrence and not record.cancelled:
            length = record.end.utc - record.start.utc
            after = self.after - length if self.after else None
            return bool(
                recurrence.expand(record.start, record.recurrence, after, self.before, limit=1)
            )
        if self.before is not None and record.start.utc >= self.before:
            return False
        if self.after is not None:
            end = record.end.utc
            # timeMin bounds the end exclusively; a zero-length event at timeMin still counts.
            if end < self.after or (end == self.after and end != record.start.utc):
                return False
        return True

    def series(self, master: StoredEvent) -> list[Item]:
        """The instances of a live series in the query window, exceptions overlaid."""
        assert master.start is not None and master.end is not None and master.recurrence is not None
        length = master.end.utc - master.start.utc
        after = self.after - length if self.after else None
        if after is not None and length == timedelta(0):
            after -= timedelta(microseconds=1)
        out: list[Item] = []
        for original in recurrence.expand(master.start, master.recurrence, after, self.before):
            exception = self.calendar.events.get(f"{master.id}_{instance_suffix(original)}")
            if exception is None:
                out.append(
                    (
                        original.utc.timestamp(),
                        master.updated_ts,
                        json.dumps(instance_resource(master, original)),
                    )
                )
            elif exception.cancelled:
                if self.query.show_deleted or self.updated_min is not None:
                    out.append(self.item(exception))
            elif self._in_window(exception):
                out.append(self.item(exception))
        return out

    # -- incremental listings --------------------------------------------------------------

    def changed(self, record: StoredEvent) -> list[Item]:
        """Items an incremental listing shows for one changed record, deletions included."""
        if not self.query.single_events or not record.recurrence:
            return [self.item(record)]
        if not record.cancelled:
            return self._all_instances(record)
        # A deleted series reaches singleEvents clients as cancelled instances.
        assert record.start is not None
        return [
            (
                original.utc.timestamp(),
                record.updated_ts,
                json.dumps(_cancelled_instance(record, original)),
            )
            for original in recurrence.expand(record.start, record.recurrence)
        ]

    def _all_instances(self, master: StoredEvent) -> list[Item]:
        out = []
        assert master.start is not None and master.recurrence is not None
        for original in recurrence.expand(master.start, master.recurrence):
            exception = self.calendar.events.get(f"{master.id}_{instance_suffix(original)}")
            if exception is None:
                out.append(
                    (
                        original.utc.timestamp(),
                        master.updated_ts,
                        json.dumps(instance_resource(master, original)),
                    )
                )
            else:
                out.append(self.item(exception))
        return out


def _cancelled_instance(master: StoredEvent, original: EventTime) -> dict[str, object]:
    return {
        "kind": "calendar#event",
        "etag": master.resource.get("etag"),
        "id": f"{master.id}_{instance_suffix(original)}",
        "status": "cancelled",
        "recurringEventId": master.id,
        "originalStartTime": original.to_json(),
    }
