"""`POST /v1/subscriptions` with an authorization code for a calendar an account follows
(real Firestore and Calendar emulators, the real `ServiceCommands`): the subscription's
credential is its account's, which a grant for one calendar (the events scope only)
could not list with; so 409 `failed_precondition` naming the account, the account's
credential untouched, and the sealed token of the refused code discarded."""

from __future__ import annotations

import json
from typing import Any

from functions.adapters.firestore.views import FirestoreSubscriptionRecords
from functions.api.openapi import document
from functions.api.service import Api
from functions.api.tokens import PageTokens
from functions.api.views import SubscriptionViews
from functions.api.wiring import ServiceAccounts, ServiceCommands, VaultSealer
from functions.model import CALENDAR_SCOPES
from functions.ports import CodeExchanger, ExchangedGrant
from tests.integration.accounts.conftest import ANN, World
from tests.unit.api.fakes import FakeExchanger
from tests.unit.api.fakes import World as FakeWorld


class EventsOnly(CodeExchanger):
    """Ann granted the events scope only (enough for one calendar, not for her list)."""

    def exchange(self, code: str, redirect_uri: str,
                 code_verifier: str | None) -> ExchangedGrant:
        return ExchangedGrant(ANN, f"rt:{ANN}", ("openid", "email", CALENDAR_SCOPES[0]))

    def consent_config(self) -> dict[str, Any]:
        return FakeExchanger(FakeWorld()).consent_config()


def test_a_code_for_a_followed_calendar_is_refused_with_409(world: World) -> None:
    primary = world.control.add_user(ANN)
    connected = world.account_service.connect(ANN, world.grant(ANN))
    world.drain()
    account_id = connected.account.id
    before = world.account_service.require(account_id).credentials_ref
    tokens = PageTokens([b"accounts-test-key" * 2])
    accounts = ServiceAccounts(lambda: world.account_service, tokens)
    commands = ServiceCommands(lambda: world.service, world.store, lambda: world.vault)
    views = SubscriptionViews(FirestoreSubscriptionRecords(world.db), tokens)
    api = Api(commands, views, None,  # type: ignore[arg-type]
              EventsOnly(), VaultSealer(lambda: world.vault, world.accounts.credentials_in_use),
              document, accounts=accounts, account_reader=accounts)
    sealed_before = {d.id for d in world.db.collection("credentials").stream()}

    body = {"calendar_id": primary, "oauth": {"code": "c", "redirect_uri": "http://127.0.0.1/"}}
    answer = api.handle("POST", "/v1/subscriptions", [], "application/json",
                        json.dumps(body).encode())
    assert answer.status == 409, answer.body
    error = answer.body["error"]
    assert error["code"] == "failed_precondition"
    assert account_id in error["message"] and "POST /v1/accounts" in error["message"]
    assert error["details"]["account_id"] == account_id
    assert world.account_service.require(account_id).credentials_ref == before
    assert {d.id for d in world.db.collection("credentials").stream()} == sealed_before
    world.account_service.request_list_sync(account_id)
    world.drain()
    assert world.account_service.status(account_id).last_error is None
