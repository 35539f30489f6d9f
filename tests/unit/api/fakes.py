"""In-memory fakes of the API's ports, and an `Api` wired to them.

Used for the router's unit tests and the in-process input fuzz; each port
has its own integration test over the real emulators."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from functions.api.feed import ChangesPage, ChangesQuery, EventsPage
from functions.api.openapi import document
from functions.api.service import Api
from functions.errors import (
    AccountNotFound,
    CodeRejected,
    CursorAhead,
    CursorExpired,
    EventMissing,
    InvalidTransition,
    SubscriptionNotFound,
)
from functions.model import CALENDAR_LIST_SCOPE, CALENDAR_SCOPES
from functions.ports import (
    AccountCommands,
    AccountReader,
    CodeExchanger,
    Connected,
    CredentialSealer,
    ExchangedGrant,
    FeedPort,
    Subscribed,
    SubscriptionCommands,
    SubscriptionReader,
)

GOOD_CODE = "good-code"
EVENTS_ONLY_CODE = "events-only-code"
REFRESH_TOKEN = "1//refresh-token-never-shown"


@dataclass
class World:
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    sealed: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    entries: dict[str, int] = field(default_factory=dict)  # sub -> change_seq
    oldest: dict[str, int] = field(default_factory=dict)  # sub -> oldest retained seq
    failure: BaseException | None = None  # raised by every port when set


def _view(sub_id: str, sub: dict[str, Any], change_seq: int) -> dict[str, Any]:
    return {"id": sub_id, "calendar_id": sub["calendar_id"], "owner": sub["owner"],
            "credentials": "oauth" if sub["ref"].startswith("oauth:") else "dwd",
            "status": sub["status"], "labels": dict(sub["labels"]),
            "created_at": "2026-01-01T00:00:00.000000Z", "last_synced_at": None,
            "last_notification_at": None, "change_seq": change_seq, "channel": None,
            "error": None}


class FakeCommands(SubscriptionCommands):
    def __init__(self, world: World) -> None:
        self.w = world

    def _get(self, sub_id: str) -> dict[str, Any]:
        if self.w.failure:
            raise self.w.failure
        if sub_id not in self.w.subs:
            raise SubscriptionNotFound(sub_id)
        return self.w.subs[sub_id]

    def subscribe(self, calendar_id: str, owner: str, credentials_ref: str,
                  labels: dict[str, str]) -> Subscribed:
        if self.w.failure:
            raise self.w.failure
        key = (calendar_id.lower(), owner.lower())
        if key in self.w.keys:
            sub_id = self.w.keys[key]
            if self.w.subs[sub_id]["status"] == "deleting":
                raise InvalidTransition("being deleted", "deleting")
            return Subscribed(sub_id, created=False, queued=False)
        sub_id = f"sub{len(self.w.subs) + 1:04d}"
        self.w.keys[key] = sub_id
        self.w.subs[sub_id] = {"calendar_id": calendar_id, "owner": owner,
                               "ref": credentials_ref, "status": "active",
                               "labels": dict(labels)}
        self.w.calls.append(("subscribe", sub_id, credentials_ref))
        return Subscribed(sub_id, created=True, queued=True)

    def reauthorize(self, sub_id: str, credentials_ref: str) -> None:
        self._get(sub_id)["ref"] = credentials_ref
        self.w.calls.append(("reauthorize", sub_id, credentials_ref))

    def _move(self, sub_id: str, to: str) -> None:
        sub = self._get(sub_id)
        if sub["status"] == "deleting":
            raise InvalidTransition("being deleted", "deleting")
        sub["status"] = to

    def pause(self, sub_id: str) -> None:
        self._move(sub_id, "paused")

    def resume(self, sub_id: str) -> None:
        self._move(sub_id, "active")

    def unsubscribe(self, sub_id: str) -> None:
        self._get(sub_id)["status"] = "deleting"

    def resync(self, sub_id: str, full: bool) -> None:
        sub = self._get(sub_id)
        if sub["status"] != "active":
            raise InvalidTransition("resume first", sub["status"])
        self.w.calls.append(("resync", sub_id, str(full)))


class FakeReader(SubscriptionReader):
    def __init__(self, world: World) -> None:
        self.w = world

    def get(self, sub_id: str) -> dict[str, Any] | None:
        if self.w.failure:
            raise self.w.failure
        sub = self.w.subs.get(sub_id)
        return None if sub is None else _view(sub_id, sub, self.w.entries.get(sub_id, 0))

    def search(self, status: str | None, labels: tuple[tuple[str, str], ...],
               page_token: str | None, limit: int,
               account: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        if self.w.failure:
            raise self.w.failure
        found = [_view(i, s, self.w.entries.get(i, 0)) for i, s in sorted(self.w.subs.items())
                 if (status is None or s["status"] == status)
                 and (account is None or s.get("account_id") == account)
                 and all(s["labels"].get(k) == v for k, v in labels)]
        return found[:limit], None


class FakeAccounts(AccountCommands, AccountReader):
    """Accounts by owner; connecting again replaces the credential and the policy."""

    def __init__(self, world: World) -> None:
        self.w = world

    def connect(self, owner: str, credentials_ref: str,
                policy: dict[str, Any] | None) -> Connected:
        if self.w.failure:
            raise self.w.failure
        for account_id, account in self.w.accounts.items():
            if account["owner"].lower() == owner.lower():
                if account["status"] == "deleting":
                    raise InvalidTransition("being deleted", "deleting")
                account["ref"] = credentials_ref
                if policy is not None:
                    account["policy"] = dict(policy)
                self.w.calls.append(("reconnect", account_id, credentials_ref))
                return Connected(account_id, created=False, queued=True)
        account_id = f"acct{len(self.w.accounts) + 1:04d}"
        self.w.accounts[account_id] = {"owner": owner, "ref": credentials_ref,
                                       "policy": dict(policy or {}), "status": "active"}
        self.w.calls.append(("connect", account_id, credentials_ref))
        return Connected(account_id, created=True, queued=True)

    def delete(self, account_id: str) -> None:
        if self.w.failure:
            raise self.w.failure
        if account_id not in self.w.accounts:
            raise AccountNotFound(account_id)
        self.w.accounts[account_id]["status"] = "deleting"

    def get(self, account_id: str) -> dict[str, Any] | None:
        if self.w.failure:
            raise self.w.failure
        account = self.w.accounts.get(account_id)
        if account is None:
            return None
        return {"id": account_id, "owner": account["owner"],
                "credentials": "oauth" if account["ref"].startswith("oauth:") else "dwd",
                "status": account["status"], "policy": account["policy"],
                "created_at": "2026-01-01T00:00:00.000000Z", "calendars_followed": 0,
                "last_list_sync_at": None, "last_notification_at": None, "channel": None,
                "error": None}

    def search(self, page_token: str | None,
               limit: int) -> tuple[list[dict[str, Any]], str | None]:
        if self.w.failure:
            raise self.w.failure
        views = [self.get(i) for i in sorted(self.w.accounts)]
        return [v for v in views if v is not None][:limit], None


class FakeFeed(FeedPort):
    """Dense entries 1..change_seq per subscription; those below `oldest` are gone."""

    def __init__(self, world: World) -> None:
        self.w = world

    def _head(self, sub_id: str) -> int:
        if self.w.failure:
            raise self.w.failure
        if sub_id not in self.w.subs:
            raise SubscriptionNotFound(sub_id)
        return self.w.entries.get(sub_id, 0)

    def changes(self, sub_id: str, query: ChangesQuery) -> ChangesPage:
        head = self._head(sub_id)
        if query.cursor > head:
            raise CursorAhead(query.cursor, head)
        oldest = self.w.oldest.get(sub_id, 1)
        if query.cursor < head and query.cursor + 1 < oldest:
            raise CursorExpired(query.cursor, oldest)
        seqs = range(query.cursor + 1, min(head, query.cursor + query.limit) + 1)
        entries: list[dict[str, Any]] = [{"seq": s, "kind": "created", "event_id": f"e{s}",
                    "recurring_event_id": None, "fields": {}, "etag": None,
                    "at": None, "expire_at": None} for s in seqs]
        last = seqs[-1] if seqs else query.cursor
        return ChangesPage([e for e in entries if query.passes(e)], last, last < head,
                           len(entries))

    def events(self, sub_id: str, page_token: str | None, limit: int,
               include_deleted: bool) -> EventsPage:
        head = self._head(sub_id)
        if page_token is not None and page_token != "fake-token":
            from functions.api.errors import invalid

            raise invalid("page_token is not a token this request issued")
        return EventsPage([], head, None)

    def event(self, sub_id: str, event_id: str) -> dict[str, Any]:
        self._head(sub_id)
        if event_id != "known":
            raise EventMissing(event_id)
        return {"event_id": "known", "seq": 1, "deleted": False, "event": {"id": "known"}}


class FakeExchanger(CodeExchanger):
    def __init__(self, world: World) -> None:
        self.w = world

    def exchange(self, code: str, redirect_uri: str,
                 code_verifier: str | None) -> ExchangedGrant:
        if self.w.failure:
            raise self.w.failure
        if code == EVENTS_ONLY_CODE:  # a user who did not grant the calendar list
            return ExchangedGrant("user@example.com", REFRESH_TOKEN,
                                  ("openid", "email", CALENDAR_SCOPES[0]))
        if code != GOOD_CODE:
            raise CodeRejected("invalid_grant", "Bad Request")
        return ExchangedGrant("user@example.com", REFRESH_TOKEN,
                              ("openid", "email", CALENDAR_SCOPES[0], CALENDAR_LIST_SCOPE))

    def consent_config(self) -> dict[str, Any]:
        return {"client_id": "cid", "scopes": ["openid", CALENDAR_SCOPES[0]],
                "auth_uri": "http://127.0.0.1/auth", "access_type": "offline",
                "prompt": "consent"}


class FakeSealer(CredentialSealer):
    def __init__(self, world: World) -> None:
        self.w = world

    def seal(self, refresh_token: str) -> str:
        ref = f"oauth:c{len(self.w.sealed) + 1}"
        self.w.sealed[ref] = refresh_token
        return ref

    def discard(self, credentials_ref: str) -> None:
        self.w.sealed.pop(credentials_ref, None)


def fake_api(world: World) -> Api:
    accounts = FakeAccounts(world)
    return Api(FakeCommands(world), FakeReader(world), FakeFeed(world), FakeExchanger(world),
               FakeSealer(world), document, accounts=accounts, account_reader=accounts)
