"""Accounts over HTTP on the whole local stack (`make up`): connect with an OAuth code,
its calendars followed through the real task path, a calendar shared and unshared
announced by the calendar list's pushes, the account's health, its subscriptions,
the CLI's view of it, and its deletion."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.e2e.conftest import E2E, event_body, wait_until
from tests.e2e.test_api import Http, expect_error
from tests.e2e.test_cli import KEYS, cli

pytestmark = pytest.mark.e2e
CARA = "cara@example.com"
DAVE = "dave@example.com"


@pytest.fixture
def http(e2e: E2E) -> Http:
    return Http(e2e.env["CALSYNC_API_URL"])


def _code(e2e: E2E, http: Http, user: str, redirect: str) -> str:
    scopes = http("GET", "/v1/oauth/config")[1]["scopes"]
    request = urllib.request.Request(
        e2e.env["CALENDAR_EMULATOR_CONTROL"] + "auth/codes", method="POST",
        headers={"Content-Type": "application/json"},
        data=json.dumps({"user": user, "redirect_uri": redirect, "scopes": scopes}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["code"])


def _account(http: Http, account_id: str) -> dict[str, Any]:
    status, body, _ = http("GET", f"/v1/accounts/{account_id}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def _subscriptions(http: Http, query: str) -> list[dict[str, Any]]:
    status, body, _ = http("GET", f"/v1/subscriptions?{query}")
    assert status == 200, body
    return body["subscriptions"]  # type: ignore[no-any-return]


def test_an_account_over_http(e2e: E2E, http: Http) -> None:
    redirect = "http://127.0.0.1:9/callback"
    api, extra = e2e.new_calendar(CARA, events=1)
    api.events().insert(calendarId="primary", body=event_body("on the primary")).execute()
    body = {"oauth": {"code": _code(e2e, http, CARA, redirect), "redirect_uri": redirect},
            "policy": {"calendars": "all", "exclude": []}}
    status, account, _ = http("POST", "/v1/accounts", body)
    assert status == 201, account
    assert (account["owner"], account["credentials"]) == (CARA, "oauth")
    account_id = account["id"]
    expect_error(http("POST", "/v1/accounts", body), 400, "invalid_argument")  # used code

    wait_until(lambda: _account(http, account_id)["calendars_followed"] == 2, 60,
               "the account's two calendars followed")
    # The list run follows the calendars before its final commit records the listing:
    # wait for that too.
    health = wait_until(lambda: (lambda a: a if a["channel"] and a["channel"]["state"]
                                 == "active" and a["last_list_sync_at"] else None)(
                                     _account(http, account_id)), 60,
                        "the calendar list watched and its listing recorded")
    assert health["status"] == "active" and health["last_list_sync_at"] and not health["error"]
    subs = _subscriptions(http, f"account={account_id}")
    assert {s["calendar_id"] for s in subs} == {extra, CARA}
    for sub in subs:
        assert sub["credentials"] == "oauth" and sub["owner"] == CARA
        entries = wait_until(lambda s=sub: http(
            "GET", f"/v1/subscriptions/{s['id']}/changes")[1]["changes"] or None, 60,
            "the first entries")
        assert entries[0]["kind"] == "calendar_added"

    # Dave shares a calendar with Cara: the list's push brings it in; unshared, it leaves.
    dave, shared = e2e.new_calendar(DAVE, events=2)
    e2e.control.share_calendar(shared, CARA, "reader")
    wait_until(lambda: _account(http, account_id)["calendars_followed"] == 3, 60,
               "the shared calendar followed")
    [followed] = [s for s in _subscriptions(http, f"account={account_id}")
                  if s["calendar_id"] == shared]
    wait_until(lambda: [e["kind"] for e in http(
        "GET", f"/v1/subscriptions/{followed['id']}/changes")[1]["changes"]].count(
            "created") == 2 or None, 60, "the shared calendar's events synced")
    e2e.control.unshare_calendar(shared, CARA)
    wait_until(lambda: _account(http, account_id)["calendars_followed"] == 2, 60,
               "the unshared calendar left")
    [removed] = _subscriptions(http, f"account={account_id}&status=removed")
    assert removed["calendar_id"] == shared
    kinds = [e["kind"] for e in http("GET", f"/v1/subscriptions/{removed['id']}/changes")[1][
        "changes"]]
    assert kinds[0] == "calendar_added" and kinds[-1] == "calendar_removed"
    assert kinds.count("created") == 2
    expect_error(http("DELETE", f"/v1/subscriptions/{subs[0]['id']}"), 409,
                 "failed_precondition")  # the account's to take down

    listed = http("GET", "/v1/accounts")[1]
    assert [a["id"] for a in listed["accounts"]] == [account_id]
    shown = json.loads(cli(e2e, "account-status", account_id, "--json", without=KEYS).stdout)
    assert shown["accounts"][0]["calendars_followed"] == 2
    assert cli(e2e, "account-status", "nobody", "--json").returncode == 3

    status, gone, _ = http("DELETE", f"/v1/accounts/{account_id}")
    assert status == 202 and gone["status"] == "deleting"
    # The request only marked it: the task it queued takes it down.
    wait_until(lambda: http("GET", f"/v1/accounts/{account_id}")[0] == 404, 60,
               "the account's deletion task to take it down")
    expect_error(http("GET", f"/v1/accounts/{account_id}"), 404, "not_found")
    # Each subscription's deletion waits for its `subscription_deleted` message: the
    # worker publishes it, then finishes the deletion.
    wait_until(lambda: _subscriptions(http, f"account={account_id}") == [], 60,
               "the account's subscriptions to be deleted")
