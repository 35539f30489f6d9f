"""The `/v1` route table: paths, parameters, bodies and answers, in one place.

The router matches and validates requests from this table, and
`api_openapi.document()` renders the OpenAPI document from it; a test checks
that the two agree with what the handlers answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from functions.api.errors import (
    CURSOR_EXPIRED,
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    UNAVAILABLE,
    invalid,
    method_not_allowed,
    not_found,
)
from functions.api.schema import Arr, Bool, CommaList, Int, Obj, Schema, Str, StrMap
from functions.model import FEED_KINDS

MAX_LIMIT = 1000
MAX_ACCOUNT_LIMIT = 100  # each account's health counts its calendars
MAX_BODY_BYTES = 64 * 1024
STATUSES = ("active", "paused", "error", "deleting", "removed")
ACCOUNT_STATUSES = ("active", "error", "deleting")
# Roles a policy may require, weakest first: below `reader` nothing can be listed.
POLICY_ROLES = ("reader", "writerWithoutPrivateAccess", "writer", "owner")
KINDS = FEED_KINDS  # event kinds, then lifecycle kinds (`model.LIFECYCLE_KINDS`)
LABEL_KEY = r"[a-z][a-z0-9_-]{0,62}"
LABEL_VALUE = r"[a-z0-9_-]{0,63}"

# Firestore document ids: no "/", not "." or "..", not `__x__`.
DOCUMENT_ID = r"(?!__.*__$)[A-Za-z0-9_-]{1,128}"
SUB_ID = Str(pattern=DOCUMENT_ID, max_length=128, description="The subscription's id.")
ACCOUNT_ID = Str(pattern=DOCUMENT_ID, max_length=128, description="The account's id.")
EVENT_ID = Str(pattern=r"(?!__.*__$)(?!\.\.?$)[^/\x00-\x1f]{1,1024}", max_length=1024,
               max_bytes=1024,
               description="Google's event id (an instance's id for recurring events).")
LABELS = StrMap(Str(pattern=LABEL_KEY, max_length=63), Str(pattern=LABEL_VALUE, max_length=63),
                description="The consumer's own labels (Google Cloud label rules).")
PAGE_TOKEN = Str(max_length=2048, min_length=1,
                 description="`next_page_token` of the previous page (opaque).")
EMAIL = Str(pattern=r"[^@\s]{1,64}@[^@\s]{1,255}", max_length=320,
            description="The Google account calsync acts as.")


@dataclass(frozen=True)
class Param:
    name: str
    schema: Schema
    default: Any = None
    repeated: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation: str  # the OpenAPI operationId and the handler's name
    summary: str
    success: tuple[int, ...]  # HTTP statuses of a successful answer
    response: str  # the schema of the successful answer (components/schemas)
    errors: tuple[str, ...]
    params: tuple[Param, ...] = ()
    body: Obj | None = None

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)

    def path_schema(self, name: str) -> Schema:
        if name == "event_id":
            return EVENT_ID
        return ACCOUNT_ID if self.path.startswith("/v1/accounts") else SUB_ID


@dataclass(frozen=True)
class Call:
    """A request that passed validation: what the handler receives."""

    route: Route
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any] = field(default_factory=dict)


_BASE = (INVALID_ARGUMENT, UNAVAILABLE, INTERNAL)
_ONE = (*_BASE, NOT_FOUND)
_TRANSITION = (*_ONE, FAILED_PRECONDITION)
_LIMIT = Param("limit", Int(1, MAX_LIMIT, description="Entries per page (at most 1000)."),
               default=100)

OAUTH_CODE = Obj(
    properties={
        "code": Str(min_length=1, max_length=4096,
                    description="The authorization code the consent page returned."),
        "redirect_uri": Str(pattern=r"https?://\S+", max_length=2048,
                            description="The redirect URI the code was issued for."),
        "code_verifier": Str(pattern=r"[A-Za-z0-9._~-]{43,128}", max_length=128,
                             description="PKCE verifier, when the app used PKCE."),
    },
    required=("code", "redirect_uri"),
    description="An authorization code to exchange for the owner's refresh token.",
)
SUBSCRIBE_BODY = Obj(
    properties={
        "calendar_id": Str(min_length=1, max_length=1024,
                           description="Calendar id (`primary` is the owner's address)."),
        "owner": EMAIL,
        "credentials": Str(enum=("dwd",), description="Domain-wide delegation."),
        "oauth": OAUTH_CODE,
        "labels": LABELS,
    },
    required=("calendar_id",),
    one_of=(("owner", "credentials"), ("oauth",)),
    description="Either an owner with domain-wide delegation, or an OAuth code.",
)
POLICY = Obj(
    properties={
        "calendars": Str(enum=("all", "owned"),
                         description="`all` readable calendars of the list (the default), or "
                                     "only those the owner owns (the primary, and secondary "
                                     "calendars whose data owner is the owner)."),
        "min_access_role": Str(enum=POLICY_ROLES,
                               description="Follow a calendar only while the owner's "
                                           "`accessRole` is at least this (default reader)."),
        "exclude": Arr(Str(min_length=1, max_length=1024), max_items=100,
                       description="Calendar ids never followed (`primary`: the owner's)."),
    },
    description="Which calendars of the account's list are followed; a calendar leaving it "
                "(unshared, deleted, access below the policy) is unsubscribed and its feed "
                "kept for the retention period (status `removed`).",
)
CONNECT_BODY = Obj(
    properties={"owner": EMAIL,
                "credentials": Str(enum=("dwd",), description="Domain-wide delegation."),
                "oauth": OAUTH_CODE, "policy": POLICY},
    one_of=(("owner", "credentials"), ("oauth",)),
    description="Either an owner with domain-wide delegation, or an OAuth code; connecting "
                "the same owner again replaces the account's credentials (for every "
                "subscription it follows) and, when given, its policy.",
)
RESYNC_BODY = Obj(properties={"full": Bool(
    description="List everything again and reconcile deletions (as after a 410).")})

ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/subscriptions", "create_subscription",
          "Subscribe a calendar (idempotent per calendar and owner)",
          # 404: only when it is unsubscribed between subscribing and the answer.
          (201, 200), "Subscription", (*_ONE, FAILED_PRECONDITION), body=SUBSCRIBE_BODY),
    Route("GET", "/v1/subscriptions", "list_subscriptions", "List subscriptions",
          (200,), "SubscriptionList", _BASE, params=(
              Param("status", Str(enum=STATUSES, description="Only this status.")),
              Param("label", Str(pattern=f"{LABEL_KEY}:{LABEL_VALUE}", max_length=127,
                                 description="KEY:VALUE; repeat it: all must match."),
                    repeated=True),
              Param("account", Str(pattern=ACCOUNT_ID.pattern, max_length=128,
                                   description="Only the subscriptions of this account "
                                               "(followed or removed).")),
              Param("page_token", PAGE_TOKEN),
              _LIMIT)),
    Route("GET", "/v1/subscriptions/{id}", "get_subscription", "One subscription and its health",
          (200,), "Subscription", _ONE),
    Route("DELETE", "/v1/subscriptions/{id}", "delete_subscription",
          "Unsubscribe: the answer shows it `deleting`; 404 once gone",
          (202,), "Subscription", _ONE),
    Route("POST", "/v1/subscriptions/{id}/pause", "pause_subscription",
          "Stop syncing until resumed", (200,), "Subscription", _TRANSITION),
    Route("POST", "/v1/subscriptions/{id}/resume", "resume_subscription",
          "Resume syncing (also out of `error`)", (200,), "Subscription", _TRANSITION),
    Route("POST", "/v1/subscriptions/{id}/resync", "resync_subscription",
          "Request a sync now; `full` lists everything again", (202,), "Subscription",
          _TRANSITION, body=RESYNC_BODY),
    Route("GET", "/v1/subscriptions/{id}/changes", "list_changes",
          "The change feed after a cursor", (200,), "ChangePage", (*_ONE, CURSOR_EXPIRED),
          params=(
              Param("cursor", Int(description="Entries with a larger `seq` (default 0)."),
                    default=0),
              _LIMIT,
              Param("kinds", CommaList(Str(enum=KINDS), max_items=len(KINDS),
                                       description="Only these kinds, event or lifecycle "
                                                   "ones (a filter: `next_cursor` still "
                                                   "advances).")),
              Param("fields", CommaList(Str(pattern=r"[A-Za-z][A-Za-z0-9_]{0,63}",
                                            max_length=64),
                                        description="Only `updated` entries touching one "
                                                    "of these fields (and every other "
                                                    "entry: created, deleted, lifecycle). "
                                                    "The Pub/Sub filter that agrees: "
                                                    "`NOT attributes.kind = \"updated\" OR "
                                                    "attributes:changed_F OR ...`.")))),
    Route("GET", "/v1/subscriptions/{id}/events", "list_events",
          "The current snapshots, paged, with the feed position `as_of_seq`",
          (200,), "EventPage", _ONE, params=(
              Param("page_token", PAGE_TOKEN),
              _LIMIT,
              Param("include_deleted", Bool(description="Also deleted events."),
                    default=False))),
    Route("GET", "/v1/subscriptions/{id}/events/{event_id}", "get_event",
          "One event's current snapshot", (200,), "EventItem", _ONE),
    Route("POST", "/v1/accounts", "create_account",
          "Connect an account: its calendars are followed (idempotent per owner)",
          (201, 200), "Account", (*_BASE, FAILED_PRECONDITION), body=CONNECT_BODY),
    Route("GET", "/v1/accounts", "list_accounts", "List accounts", (200,), "AccountList",
          _BASE, params=(Param("page_token", PAGE_TOKEN), Param(
              "limit", Int(1, MAX_ACCOUNT_LIMIT, description="Accounts per page (at most "
                                                             f"{MAX_ACCOUNT_LIMIT})."),
              default=50))),
    Route("GET", "/v1/accounts/{id}", "get_account", "One account and its health",
          (200,), "Account", _ONE),
    Route("DELETE", "/v1/accounts/{id}", "delete_account",
          "Disconnect: answers `deleting`; a task then deletes its subscriptions and "
          "credential; 404 once gone",
          (202,), "Account", _ONE),
    Route("GET", "/v1/oauth/config", "oauth_config",
          "What an app needs to build the consent URL", (200,), "OAuthConfig",
          (*_BASE, FAILED_PRECONDITION)),
    Route("GET", "/v1/openapi.json", "openapi", "This document", (200,), "OpenApi",
          (INVALID_ARGUMENT, INTERNAL)),
)


def _pattern(route: Route) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route.path))
                      + "$")


_MATCHERS = [(route, _pattern(route)) for route in ROUTES]


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for `method path` and its raw path parameters; ApiError if none:
    404 when no route has the path, 405 when some route has it with another method."""
    allowed: list[str] = []
    for route, pattern in _MATCHERS:
        found = pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        allowed.append(route.method)
    if allowed:
        raise method_not_allowed(method, path, allowed)
    raise not_found(f"no route {path}")


def parse(route: Route, raw_path: Mapping[str, str], args: Sequence[tuple[str, str]],
          content_type: str | None, body: bytes) -> Call:
    """Validate path, query and body against the route: an ApiError if anything is off."""
    path = {name: str(route.path_schema(name).parse_text(value, name))
            for name, value in raw_path.items()}
    return Call(route, path, _query(route, args), _body(route, content_type, body))


def _query(route: Route, args: Sequence[tuple[str, str]]) -> dict[str, Any]:
    known = {param.name: param for param in route.params}
    seen: dict[str, list[str]] = {}
    for name, value in args:
        if name not in known:
            raise invalid(f"unknown query parameter {name}", field=name)
        seen.setdefault(name, []).append(value)
    query: dict[str, Any] = {}
    for name, param in known.items():
        values = seen.get(name, [])
        if len(values) > 1 and not param.repeated:
            raise invalid(f"query parameter {name} is given more than once", field=name)
        if len(values) > 64:
            raise invalid(f"query parameter {name} is given more than 64 times", field=name)
        parsed = [param.schema.parse_text(value, name) for value in values]
        if param.repeated:
            query[name] = tuple(parsed)
        else:
            query[name] = parsed[0] if parsed else param.default
    return query


def _body(route: Route, content_type: str | None, body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise invalid(f"the body is larger than {MAX_BODY_BYTES} bytes")
    if route.body is None:
        if body.strip():
            raise invalid(f"{route.method} {route.path} takes no body")
        return {}
    if not body.strip() and not (route.body.required or route.body.one_of):
        return {}  # an optional body may be left out entirely
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise invalid("the body must be JSON (Content-Type: application/json)",
                      content_type=content_type or "")
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise invalid(f"the body is not valid JSON: {str(err)[:120]}") from None
    validated: dict[str, Any] = route.body.validate(value, "")
    return validated


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
