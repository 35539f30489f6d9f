"""A reconnect that fails after the account switched to the new credential (real
Firestore and Calendar emulators, the real `Api` wiring of accounts): the API answers
503, but the sealed credential the account now uses is kept, so the account still
lists and syncs with it."""

from __future__ import annotations

from typing import Any

import pytest

from functions.api.openapi import document
from functions.api.service import Api
from functions.api.tokens import PageTokens
from functions.api.wiring import ServiceAccounts, VaultSealer
from functions.errors import StoreUnavailable
from functions.model import CALENDAR_LIST_SCOPE, CALENDAR_SCOPES
from functions.ports import CodeExchanger, ExchangedGrant
from tests.integration.accounts.conftest import ANN, World
from tests.unit.api.fakes import FakeCommands, FakeExchanger
from tests.unit.api.fakes import World as FakeWorld

CODE = {"oauth": {"code": "good", "redirect_uri": "http://127.0.0.1:9/cb"}}


class AnnExchanger(CodeExchanger):
    """Google's token endpoint for Ann: her refresh token, both scopes granted."""

    def exchange(self, code: str, redirect_uri: str,
                 code_verifier: str | None) -> ExchangedGrant:
        return ExchangedGrant(ANN, f"rt:{ANN}", ("openid", "email", CALENDAR_SCOPES[0],
                                                 CALENDAR_LIST_SCOPE))

    def consent_config(self) -> dict[str, Any]:
        return FakeExchanger(FakeWorld()).consent_config()


def api_of(world: World) -> Api:
    tokens = PageTokens([b"accounts-test-key" * 2])
    accounts = ServiceAccounts(lambda: world.account_service, tokens)
    return Api(FakeCommands(FakeWorld()), None,  # type: ignore[arg-type]
               None,  # type: ignore[arg-type]
               AnnExchanger(), VaultSealer(lambda: world.vault, world.accounts.credentials_in_use),
               document, accounts=accounts, account_reader=accounts)


def post(api: Api, body: dict[str, Any]) -> Any:
    import json

    return api.handle("POST", "/v1/accounts", [], "application/json", json.dumps(body).encode())


def test_a_reconnect_failing_after_the_switch_keeps_the_new_credential(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.control.add_user(ANN)
    api = api_of(world)
    first = post(api, CODE)
    assert first.status == 201, first.body
    account_id = first.body["id"]
    world.drain()
    before = world.account_service.require(account_id).credentials_ref

    def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable("injected: the store went away after the switch")

    monkeypatch.setattr(world.accounts, "record_list_request", down)
    failed = post(api, CODE)
    assert failed.status == 503, failed.body
    monkeypatch.undo()

    now = world.account_service.require(account_id).credentials_ref
    assert now != before  # the switch had committed before the failure
    # The credential the account (and every subscription it follows) uses is still there.
    assert world.db.document(f"credentials/{now.split(':', 1)[1]}").get().exists
    assert world.vault.refresh_token(now.split(":", 1)[1]) == f"rt:{ANN}"
    assert world.account_service.request_list_sync(account_id)
    world.drain()
    status = world.account_service.status(account_id)
    assert status.status == "active" and status.last_error is None, status
    assert status.calendars_followed == 1


def test_the_cli_keeps_a_credential_the_account_switched_to(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """`calsync connect --refresh-token-stdin` discards through `discard_unused`."""
    world.control.add_user(ANN)
    account = world.account_service.connect(ANN, world.grant(ANN)).account
    world.drain()
    new = world.grant(ANN)

    def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable("injected")

    monkeypatch.setattr(world.accounts, "record_list_request", down)
    with pytest.raises(StoreUnavailable):
        world.account_service.connect(ANN, new)
    monkeypatch.undo()
    assert world.account_service.require(account.id).credentials_ref == new
    assert not world.account_service.discard_unused(new)
    assert world.db.document(f"credentials/{new.split(':', 1)[1]}").get().exists
    unused = world.grant(ANN)  # sealed, then the connect failed before any switch
    assert world.account_service.discard_unused(unused)
    assert not world.db.document(f"credentials/{unused.split(':', 1)[1]}").get().exists
