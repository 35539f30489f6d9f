"""The control API under ``/control/``: test and benchmark hooks the public API cannot provoke."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import event_writes
from .acl import FREE_BUSY_EVENTS
from .auth_codes import CodeGrant, expand_scopes
from .control_access import ACCESS_ROUTES
from .control_fields import Handler, choice, field_value
from .errors import ApiError, bad_request, not_found
from .faults import InjectedFailure, RateLimit
from .http_types import Request, Response, json_response
from .listing import ListSettings
from .push import PushFaults
from .store import Calendar
from .timeutil import format_rfc3339

if TYPE_CHECKING:
    from .app import Emulator


def handle_control(app: Emulator, request: Request, path: tuple[str, ...]) -> Response:
    """Answer ``/control/<path>``."""
    handler = _ROUTES.get((request.method, "/".join(path)))
    if handler is None:
        raise not_found(f"No control endpoint {request.method} /control/{'/'.join(path)}")
    body: Any = {}
    if request.body.strip():
        try:
            body = json.loads(request.body)
        except ValueError:
            raise ApiError(400, "parseError", "Parse Error") from None
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Parse Error")
    if request.method == "GET":
        body = {key: values[-1] for key, values in request.query.items()}
    result = handler(app, body, request)
    return json_response(result if result is not None else {"ok": True})


def _calendar(app: Emulator, body: dict[str, Any]) -> Calendar:
    calendar_id = field_value(body, "calendarId", str)
    with app.store.lock:
        calendar = app.store.calendars.get(calendar_id)
        # A user id names that user's primary calendar, created on first use.
        return calendar if calendar is not None else app.store.ensure_user(calendar_id)


def _reset(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.reset()


def _add_user(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    user = field_value(body, "user", str)
    app.auth.register_user(user, field_value(body, "refreshToken", str, None))
    return {"calendarId": app.store.ensure_user(user).id}


def _create_calendar(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    calendar = app.store.create_calendar(
        field_value(body, "user", str),
        field_value(body, "summary", str, "Calendar"),
        field_value(body, "timeZone", str, "UTC"),
        field_value(body, "id", str, None),
    )
    return calendar.resource()


def _bulk_insert(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    calendar = _calendar(app, body)
    events = field_value(body, "events", list)
    user = field_value(body, "user", str, calendar.owner)
    with app.store.lock:
        ids = [
            event_writes.insert(app.store, calendar, user, event, lenient=True, notify=False).id
            for event in events
        ]
    if ids:
        app.store.notify(calendar.id)
    return {"ids": ids}


def _inject_failure(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.faults.inject(
        InjectedFailure(
            field_value(body, "method", str),
            field_value(body, "status", int),
            field_value(body, "reason", str),
            field_value(body, "message", str, None),
            field_value(body, "count", int, 1),
        )
    )


def _clear_failures(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.faults.clear_failures()


def _invalidate(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.store.invalidate_sync_tokens(_calendar(app, body))


def _notification_faults(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.push.set_faults(
        field_value(body, "channelId", str, None),
        PushFaults(
            drop=field_value(body, "drop", int, 0),
            delay=field_value(body, "delay", float, 0.0),
            duplicate=field_value(body, "duplicate", int, 0),
            merge_window=field_value(body, "mergeWindow", float, 0.0),
            paused=field_value(body, "paused", bool, False),
        ),
    )


def _flush(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"idle": app.push.flush(field_value(body, "timeout", float, 10.0))}


def _expire_channel(app: Emulator, body: dict[str, Any], request: Request) -> None:
    if not app.push.expire_now(field_value(body, "id", str)):
        raise not_found("Channel not found")


def _channels(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"channels": app.push.describe()}


def _invalid_grant(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.auth.set_invalid_grant(
        field_value(body, "user", str), field_value(body, "enabled", bool, True)
    )


def _refresh_token(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.auth.register_refresh_token(
        field_value(body, "refreshToken", str), field_value(body, "user", str)
    )


def _issue_code(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """A finished consent screen: ``user`` consented to ``scopes`` for ``redirect_uri``."""
    scopes = _strings(body, "scopes", None)
    if not scopes:
        raise bad_request("required", "scopes must name at least one scope.", "scopes")
    asked = expand_scopes(scopes)
    granted_names = _strings(body, "granted_scopes", scopes)
    if not granted_names:
        raise bad_request("invalid", "granted_scopes must not be empty.", "granted_scopes")
    granted = expand_scopes(granted_names)
    if not set(granted) <= set(asked):
        raise bad_request("invalid", "granted_scopes must be a subset of scopes.", "granted_scopes")
    method = field_value(body, "code_challenge_method", str, "S256")
    if method not in ("S256", "plain"):
        raise bad_request(
            "invalid", "code_challenge_method must be S256 or plain.", "code_challenge_method"
        )
    grant = CodeGrant(
        user=field_value(body, "user", str),
        redirect_uri=field_value(body, "redirect_uri", str),
        scopes=asked,
        granted=granted,
        challenge=field_value(body, "code_challenge", str, None),
        challenge_method=method,
        email_verified=field_value(body, "email_verified", bool, True),
        audience=field_value(body, "audience", str, None),
        offline=field_value(body, "refresh_token", bool, True),
        issued_at=app.clock.timestamp(),
    )
    if not grant.user or not grant.redirect_uri:
        raise bad_request("required", "user and redirect_uri must not be empty.", "user")
    return {"code": app.auth.codes.issue(grant)}


def _strings(body: dict[str, Any], name: str, default: list[str] | None) -> list[str] | None:
    value = field_value(body, name, list, default)
    if value is not None and not all(isinstance(item, str) and item for item in value):
        raise bad_request("invalid", f"{name} must be a list of non-empty strings.", name)
    return value


def _register_client(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.auth.register_client(
        field_value(body, "client_id", str), field_value(body, "client_secret", str)
    )


def _expire_tokens(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.auth.expire_access_tokens(field_value(body, "user", str))


def _advance_clock(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"now": format_rfc3339(app.clock.advance(field_value(body, "seconds", float)))}


def _freeze_clock(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"now": format_rfc3339(app.clock.freeze(field_value(body, "frozen", bool, True)))}


def _clock(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"now": format_rfc3339(app.clock.now())}


def _counters(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return app.counters.snapshot()


def _reset_counters(app: Emulator, body: dict[str, Any], request: Request) -> None:
    app.counters.reset()


def _rate_limit(app: Emulator, body: dict[str, Any], request: Request) -> None:
    limit = field_value(body, "limit", int, None)
    status = field_value(body, "status", int, 403)
    if status not in (403, 429):
        raise bad_request("invalid", "status must be 403 or 429", "status")
    app.faults.set_rate_limit(
        None
        if limit is None
        else RateLimit(
            limit,
            field_value(body, "windowSeconds", float, 60.0),
            status,
            field_value(body, "user", str, None),
        )
    )


def _settings(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    push = app.push.settings
    if "syncOrder" in body:
        if body["syncOrder"] not in ("async", "before", "after"):
            raise bad_request("invalid", "syncOrder must be async, before or after", "syncOrder")
        push.sync_order = body["syncOrder"]
    push.retry_initial = field_value(body, "retryInitialSeconds", float, push.retry_initial)
    push.max_attempts = field_value(body, "maxAttempts", int, push.max_attempts)
    push.timeout = field_value(body, "pushTimeoutSeconds", float, push.timeout)
    role_changes = choice(
        body,
        "calendarListRoleChanges",
        ("reported", "silent"),
        "reported" if app.store.lists.report_role_changes else "silent",
    )
    app.store.lists.report_role_changes = role_changes == "reported"
    app.free_busy_events = choice(body, "freeBusyEvents", FREE_BUSY_EVENTS, app.free_busy_events)
    settings = app.list_settings
    app.list_settings = ListSettings(
        max_page_items=field_value(body, "maxPageItems", int, settings.max_page_items),
        sync_token_ttl=field_value(body, "syncTokenTtlSeconds", float, settings.sync_token_ttl),
    )
    app.updated_min_max_age = field_value(
        body, "updatedMinMaxAgeSeconds", float, app.updated_min_max_age
    )
    app.max_channel_ttl = field_value(body, "maxChannelTtlSeconds", int, app.max_channel_ttl)
    return {
        "syncOrder": push.sync_order,
        "retryInitialSeconds": push.retry_initial,
        "maxAttempts": push.max_attempts,
        "pushTimeoutSeconds": push.timeout,
        "maxPageItems": app.list_settings.max_page_items,
        "syncTokenTtlSeconds": app.list_settings.sync_token_ttl,
        "updatedMinMaxAgeSeconds": app.updated_min_max_age,
        "maxChannelTtlSeconds": app.max_channel_ttl,
        "calendarListRoleChanges": role_changes,
        "freeBusyEvents": app.free_busy_events,
    }


def _dump_events(app: Emulator, body: dict[str, Any], request: Request) -> dict[str, Any]:
    calendar = _calendar(app, body)
    with app.store.lock:
        return {
            "calendarId": calendar.id,
            "counter": calendar.counter,
            "events": [record.resource for record in calendar.events.values()],
        }


_ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "reset"): _reset,
    ("POST", "users"): _add_user,
    ("POST", "calendars"): _create_calendar,
    ("POST", "events/bulk"): _bulk_insert,
    ("GET", "events"): _dump_events,
    ("POST", "failures"): _inject_failure,
    ("DELETE", "failures"): _clear_failures,
    ("POST", "sync-tokens/invalidate"): _invalidate,
    ("POST", "notifications/faults"): _notification_faults,
    ("POST", "notifications/flush"): _flush,
    ("POST", "channels/expire"): _expire_channel,
    ("GET", "channels"): _channels,
    ("POST", "auth/invalid-grant"): _invalid_grant,
    ("POST", "auth/refresh-tokens"): _refresh_token,
    ("POST", "auth/expire"): _expire_tokens,
    ("POST", "auth/codes"): _issue_code,
    ("POST", "auth/clients"): _register_client,
    ("POST", "clock/advance"): _advance_clock,
    ("POST", "clock/freeze"): _freeze_clock,
    ("GET", "clock"): _clock,
    ("GET", "counters"): _counters,
    ("POST", "counters/reset"): _reset_counters,
    ("POST", "rate-limit"): _rate_limit,
    ("POST", "settings"): _settings,
    **ACCESS_ROUTES,
}
