"""Routing of ``/calendar/v3/...`` requests to the store, listings and push."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import acl, event_writes
from .calendar_list_listing import get_entry, list_calendar_list, parse_calendar_list_query
from .channels import Channel, parse_stop, parse_watch, resource_id_for
from .errors import ApiError, bad_request, not_found
from .http_types import NO_CONTENT, Request, Response, json_response, raw_json_response
from .list_query import parse_instances_query, parse_list_query
from .listing import list_events, list_instances
from .store import Calendar

if TYPE_CHECKING:
    from .app import Emulator


def method_name(method: str, path: tuple[str, ...]) -> str | None:
    """The discovery method id (without ``calendar.``) a request calls, None if unknown."""
    match path:
        case ("users", "me", "calendarList") if method == "GET":
            return "calendarList.list"
        case ("users", "me", "calendarList", "watch") if method == "POST":
            return "calendarList.watch"
        case ("users", "me", "calendarList", _) if method == "GET":
            return "calendarList.get"
        case ("users", "me", "settings", "watch") if method == "POST":
            return "settings.watch"
        case ("calendars",) if method == "POST":
            return "calendars.insert"
        case ("calendars", _):
            return {
                "GET": "calendars.get",
                "DELETE": "calendars.delete",
                "PATCH": "calendars.patch",
                "PUT": "calendars.update",
            }.get(method)
        case ("calendars", _, "acl", "watch") if method == "POST":
            return "acl.watch"
        case ("calendars", _, "events"):
            return {"GET": "events.list", "POST": "events.insert"}.get(method)
        case ("calendars", _, "events", "watch") if method == "POST":
            return "events.watch"
        case ("calendars", _, "events", _):
            return {
                "GET": "events.get",
                "PUT": "events.update",
                "PATCH": "events.patch",
                "DELETE": "events.delete",
            }.get(method)
        case ("calendars", _, "events", _, "instances") if method == "GET":
            return "events.instances"
        case ("channels", "stop") if method == "POST":
            return "channels.stop"
    return None


def handle_api(app: Emulator, request: Request, path: tuple[str, ...]) -> Response:
    """Answer one Calendar API call."""
    name = method_name(request.method, path)
    if name is None:
        raise not_found()
    app.counters.add("calls", name)
    user = app.auth.user_for(request)
    # Every authenticated call counts against the quotas, watch and channels.stop included.
    app.quotas.admit(request.header("x-goog-user-project"), user)
    app.faults.check(name, user)
    store = app.store
    body = _json_body(request)
    if name.startswith("calendarList."):
        return _calendar_list(app, request, name, user, path)
    if name == "settings.watch":
        return _watch(app, request, body, user, f"settings:{user}", "users/me/settings")
    if name == "channels.stop":
        channel_id, resource_id = parse_stop(body)
        if not app.push.stop(channel_id, resource_id):
            raise not_found(f"Channel '{channel_id}' not found for project '0'")
        return NO_CONTENT
    if name == "calendars.insert":
        return _calendars_insert(app, body, user)
    calendar = store.resolve(user, path[1])
    role = store.role_of(calendar, user)
    acl.require(name, role, busy_only=app.free_busy_events == "busyOnly")
    if name.startswith("calendars."):
        return _calendar(app, request, name, calendar, body)
    if name == "acl.watch":
        return _watch(
            app, request, body, user, f"acl:{calendar.id}", f"calendars/{quote(calendar.id)}/acl"
        )
    if name == "events.list":
        query = parse_list_query(request.query, store.clock.now(), app.updated_min_max_age)
        listing = list_events(store, calendar, query, app.list_settings, role or "none")
        app.counters.add("items", name, listing.count)
        if role == "freeBusyReader":
            return json_response(acl.busy_only(json.loads(listing.body)))
        return raw_json_response(listing.body)
    if name == "events.watch":
        return _watch(
            app,
            request,
            body,
            user,
            f"events:{calendar.id}",
            f"calendars/{quote(calendar.id)}/events",
        )
    if name == "events.insert":
        return json_response(event_writes.insert(store, calendar, user, body).resource)
    event_id = path[3]
    if_match = request.header("if-match")
    if name == "events.get":
        return json_response(event_writes.get(store, calendar, event_id))
    if name == "events.update":
        return json_response(
            event_writes.update(store, calendar, user, event_id, body, if_match).resource
        )
    if name == "events.patch":
        return json_response(
            event_writes.patch(store, calendar, user, event_id, body, if_match).resource
        )
    if name == "events.delete":
        event_writes.delete(store, calendar, event_id, if_match)
        return NO_CONTENT
    listing = list_instances(
        store,
        calendar,
        event_id,
        parse_instances_query(request.query),
        app.list_settings,
        role or "none",
    )
    app.counters.add("items", name, listing.count)
    return raw_json_response(listing.body)


def _json_body(request: Request) -> Any:
    if not request.body.strip():
        return None
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "parseError", "Parse Error") from None


def _calendar_list(
    app: Emulator, request: Request, name: str, user: str, path: tuple[str, ...]
) -> Response:
    if name == "calendarList.watch":
        parse_calendar_list_query(request.query)
        return _watch(
            app, request, _json_body(request), user, f"calendarList:{user}", "users/me/calendarList"
        )
    if name == "calendarList.get":
        return json_response(get_entry(app.store, user, path[3]))
    page = list_calendar_list(
        app.store, user, parse_calendar_list_query(request.query), app.list_settings
    )
    app.counters.add("items", name, len(page["items"]))
    return json_response(page)


def _calendars_insert(app: Emulator, body: Any, user: str) -> Response:
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Parse Error")
    summary = body.get("summary")
    if not isinstance(summary, str) or not summary:
        raise ApiError(
            400, "required", "Missing summary.", location_type="other", location="summary"
        )
    time_zone = body.get("timeZone") or "UTC"
    calendar = app.store.create_calendar(user, summary, str(time_zone))
    if body.get("description"):
        calendar.description = str(body["description"])
    return json_response(calendar.resource())


def _calendar(
    app: Emulator, request: Request, name: str, calendar: Calendar, body: Any
) -> Response:
    if name == "calendars.get":
        return json_response(calendar.resource())
    if name == "calendars.delete":
        app.store.delete_calendar(calendar)
        return NO_CONTENT
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Parse Error")
    with app.store.lock:
        if name == "calendars.update" and not body.get("summary"):
            raise ApiError(
                400, "required", "Missing summary.", location_type="other", location="summary"
            )
        for key, attribute in (
            ("summary", "summary"),
            ("timeZone", "time_zone"),
            ("description", "description"),
        ):
            if isinstance(body.get(key), str):
                setattr(calendar, attribute, body[key])
        # No calendarList change or push: per the discovery document, an entry whose read-only
        # fields (calendar properties) alone changed is not returned by an incremental list.
    return json_response(calendar.resource())


def _watch(
    app: Emulator, request: Request, body: Any, user: str, resource_key: str, resource_path: str
) -> Response:
    hub = app.push
    now_ms = int(app.clock.timestamp() * 1000)
    watch = parse_watch(body, now_ms, app.max_channel_ttl)
    with hub.lock:
        if watch.id in hub.channels:
            raise bad_request("channelIdNotUnique", "Channel id not unique", "id")
        channel = Channel(
            id=watch.id,
            resource_id=resource_id_for(app.store.generation, resource_key),
            resource_key=resource_key,
            resource_uri=f"{request.base_url}/calendar/v3/{resource_path}?alt=json",
            address=watch.address,
            token=watch.token,
            expiration_ms=watch.expiration_ms,
            user=user,
        )
        hub.add(channel)
    response = json_response(channel.resource())
    order = hub.settings.sync_order
    if order == "before":
        hub.send_sync(channel, synchronously=True)
        return response
    if order == "after":
        return Response(response.status, response.body, after=lambda: hub.send_sync(channel))
    hub.send_sync(channel)
    return response
