"""The `api` function: the consumer's face, JSON over HTTP under `/v1`.

Thin: the router (`api_routes`) turns a request into a validated `Call`, one
handler calls one service, and `_error_for` maps domain errors to the one error
shape. Malformed input is always a 4xx with a one-line reason, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from functions import logs
from functions.api.errors import (
    CURSOR_EXPIRED,
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    RETRY_AFTER_SECONDS,
    UNAVAILABLE,
    ApiError,
)
from functions.api.feed import ChangesQuery
from functions.api.routes import Call, match, parse
from functions.errors import (
    PERMANENT_CALENDAR_ERRORS,
    AccountNotFound,
    CalendarUnavailable,
    CodeRejected,
    CursorAhead,
    CursorExpired,
    EventMissing,
    ExchangeUnavailable,
    InvalidTransition,
    Misconfigured,
    OAuthNotConfigured,
    QueueUnavailable,
    StoreUnavailable,
    SubscriptionNotFound,
)
from functions.model import CALENDAR_LIST_SCOPE, CALENDAR_SCOPES, rfc3339
from functions.ports import (
    AccountCommands,
    AccountReader,
    CodeExchanger,
    CredentialSealer,
    FeedPort,
    SubscriptionCommands,
    SubscriptionReader,
)

_TRANSIENT = (StoreUnavailable, QueueUnavailable, ExchangeUnavailable, CalendarUnavailable)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    def text(self) -> str:
        return json.dumps(self.body, default=_json_default, separators=(",", ":")) + "\n"


def _json_default(value: Any) -> Any:
    converted = rfc3339(value)
    return converted if converted is not value else str(value)


class Api:
    """Routes `/v1` requests to the services; every answer is JSON."""

    def __init__(self, commands: SubscriptionCommands, subscriptions: SubscriptionReader,
                 feed: FeedPort, exchanger: CodeExchanger, sealer: CredentialSealer,
                 openapi: Callable[[], dict[str, Any]],
                 accounts: AccountCommands | None = None,
                 account_reader: AccountReader | None = None) -> None:
        self._commands = commands
        self._subscriptions = subscriptions
        self._feed = feed
        self._exchanger = exchanger
        self._sealer = sealer
        self._document = openapi
        self._accounts = accounts
        self._account_reader = account_reader

    def handle(self, method: str, path: str, args: Sequence[tuple[str, str]],
               content_type: str | None, body: bytes) -> Answer:
        operation = None
        try:
            route, raw_path = match(method, path)
            operation = route.operation
            call = parse(route, raw_path, args, content_type, body)
            status, payload = getattr(self, "_" + route.operation)(call)
            answer = Answer(status, payload)
        except Exception as err:  # noqa: BLE001 - every failure becomes the one error shape
            answer = self._error_answer(_error_for(err), err)
        logs.log("WARNING" if answer.status >= 500 else "INFO", "api request",
                 method=method, operation=operation, status=answer.status,
                 code=answer.body["error"]["code"] if answer.status >= 400 else None)
        return answer

    def _error_answer(self, error: ApiError, cause: Exception) -> Answer:
        if error.code == INTERNAL:
            logs.log("ERROR", "api internal error", error=type(cause).__name__,
                     reason=str(cause)[:300])
        headers: tuple[tuple[str, str], ...] = ()
        if error.code == UNAVAILABLE:
            headers = (("Retry-After", str(RETRY_AFTER_SECONDS)),)
        elif error.code == METHOD_NOT_ALLOWED:
            headers = (("Allow", ", ".join(error.details["allowed"])),)
        return Answer(error.status, error.to_json(), headers)

    # -- subscriptions --------------------------------------------------------

    def _view(self, sub_id: str) -> dict[str, Any]:
        view = self._subscriptions.get(sub_id)
        if view is None:
            raise SubscriptionNotFound(sub_id)
        return view

    def _exchange(self, oauth: dict[str, Any], account: bool = False) -> tuple[str, str]:
        """An authorization code exchanged and its refresh token sealed at once: (the
        owner's address, the sealed credential's reference). An account's grant must
        hold the calendar list's scope too."""
        grant = self._exchanger.exchange(oauth["code"], oauth["redirect_uri"],
                                         oauth.get("code_verifier"))
        if not grant.refresh_token:
            raise CodeRejected("no_refresh_token", "Google returned no refresh token "
                               "(ask for access_type=offline and prompt=consent)")
        if CALENDAR_SCOPES[0] not in grant.scopes:
            raise CodeRejected("scope_not_granted", "the calendar scope was not granted")
        if account and CALENDAR_LIST_SCOPE not in grant.scopes:
            raise CodeRejected("scope_not_granted", "an account needs the calendar list's "
                               f"scope, which was not granted ({CALENDAR_LIST_SCOPE})")
        return grant.owner_email, self._sealer.seal(grant.refresh_token)

    def _create_subscription(self, call: Call) -> tuple[int, dict[str, Any]]:
        body = call.body
        labels = body.get("labels", {})
        if "oauth" not in body:
            done = self._commands.subscribe(body["calendar_id"], body["owner"], "dwd", labels)
            return (201 if done.created else 200), self._view(done.sub_id)
        owner, credentials_ref = self._exchange(body["oauth"])
        try:
            done = self._commands.subscribe(body["calendar_id"], owner, credentials_ref, labels)
        except BaseException:
            self._sealer.discard(credentials_ref)
            raise
        if not done.created:
            self._commands.reauthorize(done.sub_id, credentials_ref)
        return (201 if done.created else 200), self._view(done.sub_id)

    def _list_subscriptions(self, call: Call) -> tuple[int, dict[str, Any]]:
        q = call.query
        labels = tuple(tuple(s.split(":", 1)) for s in q["label"])
        extra = {"account": q["account"]} if q.get("account") is not None else {}
        found, token = self._subscriptions.search(q["status"], labels,  # type: ignore[arg-type]
                                                q["page_token"], q["limit"], **extra)
        return 200, {"subscriptions": found, "next_page_token": token}

    def _get_subscription(self, call: Call) -> tuple[int, dict[str, Any]]:
        return 200, self._view(call.path["id"])

    def _delete_subscription(self, call: Call) -> tuple[int, dict[str, Any]]:
        sub_id = call.path["id"]
        before = self._view(sub_id)
        self._commands.unsubscribe(sub_id)
        after = self._subscriptions.get(sub_id) or before
        return 202, {**after, "status": "deleting"}

    def _pause_subscription(self, call: Call) -> tuple[int, dict[str, Any]]:
        self._commands.pause(call.path["id"])
        return 200, self._view(call.path["id"])

    def _resume_subscription(self, call: Call) -> tuple[int, dict[str, Any]]:
        self._commands.resume(call.path["id"])
        return 200, self._view(call.path["id"])

    def _resync_subscription(self, call: Call) -> tuple[int, dict[str, Any]]:
        self._commands.resync(call.path["id"], bool(call.body.get("full", False)))
        return 202, self._view(call.path["id"])

    # -- accounts -------------------------------------------------------------

    def _account_ports(self) -> tuple[AccountCommands, AccountReader]:
        if self._accounts is None or self._account_reader is None:
            raise OAuthNotConfigured("accounts are not served by this deployment")
        return self._accounts, self._account_reader

    def _account_view(self, account_id: str) -> dict[str, Any]:
        view = self._account_ports()[1].get(account_id)
        if view is None:
            raise AccountNotFound(account_id)
        return view

    def _create_account(self, call: Call) -> tuple[int, dict[str, Any]]:
        accounts, _ = self._account_ports()
        body = call.body
        policy = body.get("policy")
        if "oauth" not in body:
            done = accounts.connect(body["owner"], "dwd", policy)
            return (201 if done.created else 200), self._account_view(done.account_id)
        owner, credentials_ref = self._exchange(body["oauth"], account=True)
        try:
            done = accounts.connect(owner, credentials_ref, policy)
        except BaseException:
            self._sealer.discard(credentials_ref)
            raise
        return (201 if done.created else 200), self._account_view(done.account_id)

    def _list_accounts(self, call: Call) -> tuple[int, dict[str, Any]]:
        _, reader = self._account_ports()
        found, token = reader.search(call.query["page_token"], call.query["limit"])
        return 200, {"accounts": found, "next_page_token": token}

    def _get_account(self, call: Call) -> tuple[int, dict[str, Any]]:
        return 200, self._account_view(call.path["id"])

    def _delete_account(self, call: Call) -> tuple[int, dict[str, Any]]:
        accounts, reader = self._account_ports()
        account_id = call.path["id"]
        before = self._account_view(account_id)
        accounts.delete(account_id)
        after = reader.get(account_id) or before
        return 202, {**after, "status": "deleting"}

    # -- the feed -------------------------------------------------------------

    def _list_changes(self, call: Call) -> tuple[int, dict[str, Any]]:
        q = call.query
        query = ChangesQuery(cursor=q["cursor"], limit=q["limit"], kinds=q["kinds"] or (),
                             fields=q["fields"] or ())
        return 200, self._feed.changes(call.path["id"], query).to_json()

    def _list_events(self, call: Call) -> tuple[int, dict[str, Any]]:
        q = call.query
        page = self._feed.events(call.path["id"], q["page_token"], q["limit"],
                                 q["include_deleted"])
        return 200, page.to_json()

    def _get_event(self, call: Call) -> tuple[int, dict[str, Any]]:
        return 200, self._feed.event(call.path["id"], call.path["event_id"])

    # -- documents ------------------------------------------------------------

    def _oauth_config(self, call: Call) -> tuple[int, dict[str, Any]]:
        return 200, self._exchanger.consent_config()

    def _openapi(self, call: Call) -> tuple[int, dict[str, Any]]:
        return 200, self._document()


def _error_for(err: Exception) -> ApiError:
    """The API error a domain error means (anything unexpected is `internal`)."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, SubscriptionNotFound):
        return ApiError(NOT_FOUND, f"no subscription {err.args[0] if err.args else ''}".strip(),
                        {"subscription_id": str(err.args[0]) if err.args else None})
    if isinstance(err, AccountNotFound):
        return ApiError(NOT_FOUND, f"no account {err.args[0] if err.args else ''}".strip(),
                        {"account_id": str(err.args[0]) if err.args else None})
    if isinstance(err, EventMissing):
        return ApiError(NOT_FOUND, f"no event {err.args[0]}", {"event_id": str(err.args[0])})
    if isinstance(err, InvalidTransition):
        return ApiError(FAILED_PRECONDITION, str(err), {"status": err.status})
    if isinstance(err, OAuthNotConfigured):
        return ApiError(FAILED_PRECONDITION, str(err) or "OAuth is not configured", {})
    if isinstance(err, CursorAhead):
        return ApiError(INVALID_ARGUMENT, str(err),
                        {"field": "cursor", "change_seq": err.change_seq})
    if isinstance(err, CursorExpired):
        return ApiError(CURSOR_EXPIRED, str(err),
                        {"oldest_available_seq": err.oldest_available_seq})
    if isinstance(err, CodeRejected):
        return ApiError(INVALID_ARGUMENT, f"the authorization code was refused: {err}",
                        {"field": "oauth.code", "reason": err.reason})
    if isinstance(err, PERMANENT_CALENDAR_ERRORS):
        # Stopping a channel on pause is the only Google call behind the API.
        return ApiError(FAILED_PRECONDITION, f"the calendar is not accessible: {err}"[:300],
                        {"reason": type(err).__name__})
    if isinstance(err, _TRANSIENT) and not isinstance(err, Misconfigured):
        return ApiError(UNAVAILABLE, f"temporarily unavailable ({type(err).__name__}); retry",
                        {})
    return ApiError(INTERNAL, "internal error (logged)", {})
