"""`calsync accounts` and `calsync account-status` show every account, however many
(real Firestore emulator): the listing is read page after page until a short one, not
cut at the first page of 1,000."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest

from functions.cli import accounts as cli
from functions.cli.output import Output
from functions.lifecycle.accounts import AccountService, AccountStatus
from tests.integration.accounts.conftest import World

COUNT = 1001  # one more than a page


def seed(world: World) -> set[str]:
    ids = {f"acct-{n:05d}" for n in range(COUNT)}
    batch, pending = world.db.batch(), 0
    for account_id in sorted(ids):
        batch.set(world.db.collection("accounts").document(account_id),
                  {"owner": f"{account_id}@example.com", "status": "active",
                   "credentials_ref": "dwd", "policy": {"calendars": "all"}})
        pending += 1
        if pending == 400:
            batch.commit()
            batch, pending = world.db.batch(), 0
    batch.commit()
    return ids


def cheap_status(self: AccountService, account: Any, data: dict[str, Any]) -> Any:
    """Each account's health costs reads that are not what this test is about."""
    return AccountStatus(
        id=account.id, owner=account.owner, status=account.status, policy={},
        calendars_followed=0, last_listed_at=None, last_notification_at=None,
        channel_id=None, channel_state=None, channel_expiration=None, pending_requests=0,
        last_error=None, last_error_reason=None, last_error_at=None, renewal_error=None)


@pytest.mark.parametrize("command", [cli.cmd_accounts, cli.cmd_account_status])
def test_every_account_is_listed(world: World, monkeypatch: pytest.MonkeyPatch,
                                 command: Any) -> None:
    ids = seed(world)
    monkeypatch.setattr(AccountService, "_status", cheap_status)
    monkeypatch.setattr(cli, "_reader", lambda: world.account_service)
    out = io.StringIO()
    assert command(argparse.Namespace(account_id=None), Output(True, out)) == 0
    listed = [a["id"] for a in json.loads(out.getvalue())["accounts"]]
    assert len(listed) == len(set(listed)) == COUNT
    assert set(listed) == ids
