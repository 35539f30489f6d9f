"""The OpenAPI 3.1 document of `/v1`, rendered from the router's own table.

Paths, parameters and request bodies come from `api_routes.ROUTES` (the same
objects that validate requests); error answers from `api_errors.CODES`.
"""

from __future__ import annotations

import functools
from typing import Any

from functions.api.errors import CODES, METHOD_NOT_ALLOWED
from functions.api.routes import ACCOUNT_STATUSES, KINDS, POLICY, ROUTES, STATUSES, Route

TIME = {"type": ["string", "null"], "format": "date-time",
        "description": "RFC 3339, UTC, ending in Z."}
NULLABLE_STR = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "enum": list(CODES)},
                "message": {"type": "string"},
                "details": {"type": "object", "description": "`oldest_available_seq` for "
                            "cursor_expired, `field` for invalid_argument, ..."},
            }}},
    },
    "Subscription": {
        "type": "object",
        "required": ["id", "calendar_id", "owner", "credentials", "status", "labels",
                     "created_at", "last_synced_at", "last_notification_at", "change_seq",
                     "channel", "error"],
        "properties": {
            "id": {"type": "string"},
            "calendar_id": {"type": "string"},
            "owner": {"type": "string"},
            "credentials": {"type": "string", "enum": ["dwd", "oauth", "bearer"],
                            "description": "`bearer` exists only against the local emulator."},
            "status": {"type": "string", "enum": list(STATUSES),
                       "description": "`removed`: followed through an account until the "
                                      "calendar left its list; nothing syncs, the events and "
                                      "the feed stay readable for the retention period, then "
                                      "it is deleted."},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "created_at": TIME, "last_synced_at": TIME, "last_notification_at": TIME,
            "change_seq": {"type": "integer", "description": "The last cursor issued."},
            "channel": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["state", "expiration"],
                "properties": {"state": {"type": "string"}, "expiration": TIME}}]},
            "error": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["reason", "message", "at"],
                "properties": {"reason": {"type": "string"}, "message": {"type": "string"},
                               "at": TIME}}]},
        },
    },
    "Account": {
        "type": "object",
        "required": ["id", "owner", "credentials", "status", "policy", "created_at",
                     "calendars_followed", "last_list_sync_at", "last_notification_at",
                     "channel", "error"],
        "properties": {
            "id": {"type": "string"},
            "owner": {"type": "string"},
            "credentials": {"type": "string", "enum": ["dwd", "oauth", "bearer"],
                            "description": "One credential, shared by every subscription "
                                           "the account follows."},
            "status": {"type": "string", "enum": list(ACCOUNT_STATUSES),
                       "description": "`error`: its calendar list cannot be read (reason "
                                      "`reauthorization_required`: connect it again with a "
                                      "new code)."},
            "policy": POLICY.json_schema(),
            "created_at": TIME,
            "calendars_followed": {"type": "integer",
                                   "description": "Subscriptions it follows now (`GET "
                                                  "/v1/subscriptions?account=ID`)."},
            "last_list_sync_at": TIME,
            "last_notification_at": TIME,
            "channel": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["state", "expiration"],
                "properties": {"state": {"type": "string"}, "expiration": TIME}}],
                "description": "The calendar list's watch channel."},
            "error": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["reason", "message", "at"],
                "properties": {"reason": {"type": "string"}, "message": {"type": "string"},
                               "at": TIME}}]},
        },
    },
    "AccountList": {
        "type": "object", "required": ["accounts", "next_page_token"],
        "properties": {
            "accounts": {"type": "array", "items": {"$ref": "#/components/schemas/Account"}},
            "next_page_token": NULLABLE_STR}},
    "SubscriptionList": {
        "type": "object", "required": ["subscriptions", "next_page_token"],
        "properties": {
            "subscriptions": {"type": "array", "items": {"$ref": "#/components/schemas/"
                                                                 "Subscription"}},
            "next_page_token": NULLABLE_STR}},
    "ChangeEntry": {
        "type": "object",
        "required": ["seq", "kind", "event_id", "recurring_event_id", "fields", "etag", "at",
                     "expire_at"],
        "properties": {
            "seq": {"type": "integer"},
            "kind": {"type": "string", "enum": list(KINDS)},
            "event_id": {"type": "string"},
            "recurring_event_id": NULLABLE_STR,
            "fields": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["before", "after"],
                "properties": {"before": {}, "after": {}}}},
            "etag": NULLABLE_STR, "at": TIME, "expire_at": TIME,
        },
    },
    "ChangePage": {
        "type": "object", "required": ["changes", "next_cursor", "has_more"],
        "properties": {
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/ChangeEntry"}},
            "next_cursor": {"type": "integer",
                            "description": "The seq of the last entry scanned."},
            "has_more": {"type": "boolean"}}},
    "EventItem": {
        "type": "object", "required": ["event_id", "seq", "deleted", "event"],
        "properties": {
            "event_id": {"type": "string"},
            "seq": {"type": ["integer", "null"],
                    "description": "The entry that last changed this event."},
            "deleted": {"type": "boolean"},
            "event": {"type": "object", "description": "Google's event resource."}}},
    "EventPage": {
        "type": "object", "required": ["events", "as_of_seq", "next_page_token"],
        "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/EventItem"}},
            "as_of_seq": {"type": "integer", "description": "Follow the changes from here "
                                                            "once every page is read."},
            "next_page_token": NULLABLE_STR}},
    "OAuthConfig": {
        "type": "object",
        "required": ["client_id", "scopes", "auth_uri", "access_type", "prompt"],
        "properties": {
            "client_id": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "auth_uri": {"type": "string"},
            "access_type": {"type": "string", "const": "offline"},
            "prompt": {"type": "string", "const": "consent"}}},
    "OpenApi": {"type": "object", "description": "This document."},
}


# Not an operation's answer: what every path answers to a method it does not declare.
METHOD_NOT_ALLOWED_RESPONSE: dict[str, Any] = {
    "description": f"`{METHOD_NOT_ALLOWED}`: {CODES[METHOD_NOT_ALLOWED][1]} Any path answers "
                   "it to a method this document does not declare for it (HEAD, OPTIONS, "
                   "TRACE and PUT included).",
    "headers": {"Allow": {"description": "The path's methods, comma-separated.",
                          "schema": {"type": "string"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(route: Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": route.path_schema(name).json_schema()}
        for name in route.path_params
    ]
    for param in route.params:
        schema = param.schema.json_schema()
        entry: dict[str, Any] = {"name": param.name, "in": "query", "required": False}
        if param.repeated:
            schema = {"type": "array", "items": schema}
            entry.update(style="form", explode=True)
        elif schema.get("type") == "array":
            entry.update(style="form", explode=False)
        if param.default is not None:
            schema["default"] = param.default
        entry["schema"] = schema
        parameters.append(entry)
    responses: dict[str, Any] = {
        str(status): {"description": "OK", "content": {
            "application/json": {"schema": _ref(route.response)}}}
        for status in route.success
    }
    for code in route.errors:
        status, meaning = CODES[code]
        responses[str(status)] = {"description": f"`{code}`: {meaning}", "content": {
            "application/json": {"schema": _ref("Error")}}}
        if code == "unavailable":
            responses[str(status)]["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}}}
    operation: dict[str, Any] = {"operationId": route.operation, "summary": route.summary,
                                 "parameters": parameters, "responses": responses}
    if route.body is not None:
        operation["requestBody"] = {
            "required": bool(route.body.required or route.body.one_of),
            "content": {"application/json": {"schema": route.body.json_schema()}}}
    return operation


@functools.cache
def _document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "calsync", "version": "v1",
                 "description": "Google Calendar change feeds: subscribe calendars, read "
                                "their current events, follow their changes by cursor. "
                                "Every error is the `Error` object; a method a path does "
                                "not declare is answered 405 with an `Allow` header "
                                "(`components.responses.MethodNotAllowed`)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "responses": {"MethodNotAllowed": METHOD_NOT_ALLOWED_RESPONSE}},
    }


def document() -> dict[str, Any]:
    """The document (a fresh copy each call: callers may not change the cached one)."""
    import copy

    return copy.deepcopy(_document())
