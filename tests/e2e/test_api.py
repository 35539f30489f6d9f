"""The `api` function over real HTTP against the whole local stack: subscribe,
read, follow, the lifecycle, every error case, retention (410 after pruning),
the bootstrap protocol under concurrent calendar changes, every method on every path,
and a fuzz (300 derandomised requests)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import threading
import urllib.error
import urllib.request
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings

from functions.adapters.firestore.store import seq_id
from functions.api.openapi import document
from functions.lifecycle.subscriptions import SubscriptionService
from tests.e2e.conftest import E2E, event_body, wait_until
from tests.unit.api.strategies import METHODS, requests
from tests.unit.api.test_openapi import assert_documented
from tests.unit.api.test_routes import CONTROL_PATHS

pytestmark = pytest.mark.e2e
USER = "ava@example.com"
SUB_KEYS = {"id", "calendar_id", "owner", "credentials", "status", "labels", "created_at",
            "last_synced_at", "last_notification_at", "change_seq", "complete_as_of", "channel",
            "error"}
CONTRACT = "labels" in inspect.signature(SubscriptionService.subscribe).parameters
HAS_OAUTH = importlib.util.find_spec("functions.adapters.google.oauth") is not None


class Http:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def __call__(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                 content_type: str | None = "application/json") -> tuple[int, Any, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": content_type} if content_type and data is not None else {}
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, _payload(method, response.read()), response.headers
        except urllib.error.HTTPError as err:
            return err.code, _payload(method, err.read()), err.headers


def _payload(method: str, text: bytes) -> Any:
    """The JSON answered, or the bytes when it is not JSON (None for HEAD: no body)."""
    if method == "HEAD":
        assert text == b""
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@pytest.fixture
def http(e2e: E2E) -> Http:
    return Http(e2e.env["CALSYNC_API_URL"])


def expect_error(answer: tuple[int, Any, Any], status: int, code: str) -> dict[str, Any]:
    got, body, _ = answer
    assert got == status, body
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]["details"]  # type: ignore[no-any-return]


def subscribe(http: Http, calendar_id: str, **extra: Any) -> dict[str, Any]:
    status, sub, _ = http("POST", "/v1/subscriptions", {
        "calendar_id": calendar_id, "owner": USER, "credentials": "dwd", **extra})
    assert status == 201, sub
    return sub  # type: ignore[no-any-return]


def synced(http: Http, sub_id: str, count: int) -> int:
    """Wait until the feed holds `count` entries; the change_seq."""
    def seq() -> int:
        return int(http("GET", f"/v1/subscriptions/{sub_id}")[1]["change_seq"])
    wait_until(lambda: seq() >= count, 60, f"{count} entries in the feed of {sub_id}")
    return seq()


def read_events(http: Http, sub_id: str, limit: int,
                between: Any = None) -> tuple[dict[str, Any], int]:
    events: dict[str, Any] = {}
    token, as_of = None, None
    while True:
        query = f"?limit={limit}" + (f"&page_token={token}" if token else "")
        status, page, _ = http("GET", f"/v1/subscriptions/{sub_id}/events{query}")
        assert status == 200, page
        as_of = page["as_of_seq"] if as_of is None else as_of
        assert page["as_of_seq"] == as_of
        events.update({item["event_id"]: item["event"] for item in page["events"]})
        token = page["next_page_token"]
        if token is None:
            return events, as_of
        if between is not None:
            between()


def follow(http: Http, sub_id: str, cursor: int, limit: int = 50) -> list[dict[str, Any]]:
    entries = []
    while True:
        status, page, _ = http("GET", f"/v1/subscriptions/{sub_id}/changes"
                                      f"?cursor={cursor}&limit={limit}")
        assert status == 200, page
        entries += page["changes"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return entries


def test_subscribe_read_and_lifecycle(e2e: E2E, http: Http) -> None:
    api, calendar_id = e2e.new_calendar(USER, events=4)
    sub = subscribe(http, calendar_id, labels={"tenant": "t-1"})
    assert set(sub) == SUB_KEYS
    assert (sub["credentials"], sub["labels"], sub["owner"]) == ("dwd", {"tenant": "t-1"}, USER)
    assert sub["created_at"].endswith("Z")
    sub_id = sub["id"]
    assert synced(http, sub_id, 4) == 4
    e2e.wait_quiet(sub_id)

    _, current, _ = http("GET", f"/v1/subscriptions/{sub_id}")
    assert current["status"] == "active" and current["change_seq"] == 4
    assert current["channel"]["state"] == "active" and current["last_synced_at"].endswith("Z")
    assert current["complete_as_of"].endswith("Z")  # a listing completed
    _, listed, _ = http("GET", "/v1/subscriptions?label=tenant:t-1&status=active")
    assert [s["id"] for s in listed["subscriptions"]] == [sub_id]
    assert http("GET", "/v1/subscriptions?label=tenant:other")[1]["subscriptions"] == []

    events, as_of = read_events(http, sub_id, limit=3)
    assert as_of == 4 and set(events) == set(e2e.listed(api, calendar_id))
    some = next(iter(events))
    _, item, _ = http("GET", f"/v1/subscriptions/{sub_id}/events/{some}")
    assert item["event"] == events[some] and item["deleted"] is False and item["seq"] >= 1
    entries = follow(http, sub_id, 0, limit=3)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert {e["kind"] for e in entries} == {"created"}
    _, none, _ = http("GET", f"/v1/subscriptions/{sub_id}/changes?kinds=updated,deleted")
    assert (none["changes"], none["next_cursor"], none["has_more"]) == ([], 4, False)

    base = f"/v1/subscriptions/{sub_id}"
    assert http("POST", base + "/pause")[1]["status"] == "paused"
    assert http("POST", base + "/pause")[0] == 200
    expect_error(http("POST", base + "/resync"), 409, "failed_precondition")
    assert http("POST", base + "/resume")[1]["status"] == "active"
    assert http("POST", base + "/resync", {"full": True})[0] == 202
    api.events().patch(calendarId=calendar_id, eventId=some, body={"summary": "moved"}).execute()
    wait_until(lambda: any(e["kind"] == "updated" for e in follow(http, sub_id, 4)), 60,
               "the update in the feed")
    [update] = [e for e in follow(http, sub_id, 4) if e["kind"] == "updated"]
    assert update["event_id"] == some and update["fields"]["summary"]["after"] == "moved"

    status, deleting, _ = http("DELETE", base)
    assert status == 202 and deleting["status"] == "deleting"
    wait_until(lambda: http("GET", base)[0] == 404, 60, "the subscription to be gone")
    expect_error(http("DELETE", base), 404, "not_found")


@pytest.mark.skipif(not CONTRACT, reason="SubscriptionService.subscribe has no labels/"
                                         "idempotency yet (integrator's rewrite)")
def test_subscribe_is_idempotent_per_calendar_and_owner(e2e: E2E, http: Http) -> None:
    _, calendar_id = e2e.new_calendar(USER)
    first = subscribe(http, calendar_id)
    status, again, _ = http("POST", "/v1/subscriptions", {
        "calendar_id": calendar_id, "owner": USER.upper(), "credentials": "dwd"})
    assert status == 200 and again["id"] == first["id"]


def test_bootstrap_under_concurrent_calendar_changes(e2e: E2E, http: Http) -> None:
    api, calendar_id = e2e.new_calendar(USER, events=10)
    sub_id = subscribe(http, calendar_id)["id"]
    synced(http, sub_id, 10)
    e2e.wait_quiet(sub_id)
    stop = threading.Event()
    ids = list(e2e.listed(api, calendar_id))
    failures: list[BaseException] = []

    def edit() -> None:
        events = api.events()
        n = 0
        try:
            while not stop.is_set():
                n += 1
                if n % 3 == 0:
                    created = events.insert(calendarId=calendar_id,
                                            body=event_body(f"new {n}", n)).execute()
                    ids.append(created["id"])
                elif n % 3 == 1:
                    events.patch(calendarId=calendar_id, eventId=ids[n % len(ids)],
                                 body={"summary": f"edit {n}"}).execute()
                else:
                    events.delete(calendarId=calendar_id, eventId=ids.pop(0)).execute()
                stop.wait(0.3)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            failures.append(err)

    def feed_moves() -> None:
        before = http("GET", f"/v1/subscriptions/{sub_id}")[1]["change_seq"]
        wait_until(lambda: http("GET", f"/v1/subscriptions/{sub_id}")[1]["change_seq"] > before,
                   60, "a change committed between two pages")

    editor = threading.Thread(target=edit, daemon=True)
    editor.start()
    try:
        state, as_of = read_events(http, sub_id, limit=3, between=feed_moves)
    finally:
        stop.set()
        editor.join(timeout=30)
    assert not failures
    e2e.wait_quiet(sub_id)
    entries = follow(http, sub_id, as_of)
    assert entries and entries[0]["seq"] == as_of + 1
    for entry in entries:
        if entry["kind"] == "deleted":
            state.pop(entry["event_id"], None)
        else:
            # An event deleted before its page was read is in no page, yet entries
            # after as_of_seq may update it before its deletion: apply them onto
            # nothing; its `deleted` entry follows (the protocol's "harmless replay").
            current = {} if entry["kind"] == "created" else dict(state.get(entry["event_id"], {}))
            current.update({k: v["after"] for k, v in entry["fields"].items()})
            state[entry["event_id"]] = {k: v for k, v in current.items() if v is not None}
    listed = {item["id"]: item["summary"] for item in
              api.events().list(calendarId=calendar_id, maxResults=2500).execute()["items"]
              if item["status"] != "cancelled"}
    assert {event_id: event["summary"] for event_id, event in state.items()} == listed


def test_changes_errors_and_retention(e2e: E2E, http: Http) -> None:
    _, calendar_id = e2e.new_calendar(USER, events=4)
    sub_id = subscribe(http, calendar_id)["id"]
    synced(http, sub_id, 4)
    base = f"/v1/subscriptions/{sub_id}/changes"
    assert expect_error(http("GET", base + "?cursor=5"), 400,
                        "invalid_argument")["change_seq"] == 4
    for query in ("cursor=-1", "limit=1001", "limit=0", "kinds=moved", "cursor=x", "other=1"):
        expect_error(http("GET", f"{base}?{query}"), 400, "invalid_argument")
    from google.cloud import firestore

    db = firestore.Client(project=e2e.env["GOOGLE_CLOUD_PROJECT"])
    feed = db.collection("subscriptions").document(sub_id).collection("changes")
    for seq in (1, 2):  # what the TTL policy does to expired entries
        feed.document(seq_id(seq)).delete()
    for cursor in (0, 1):
        assert expect_error(http("GET", f"{base}?cursor={cursor}"), 410,
                            "cursor_expired") == {"oldest_available_seq": 3}
    assert [e["seq"] for e in follow(http, sub_id, 2)] == [3, 4]


def test_input_errors_over_http(e2e: E2E, http: Http) -> None:
    for raw, content_type in ((b"{", "application/json"), (b'{"calendar_id": "x"}', "text/plain"),
                              (b'{"calendar_id": "x", "owner": "a@b.c", "credentials": "dwd",'
                               b' "extra": 1}', "application/json"),
                              (b'{"calendar_id": 5, "owner": "a@b.c", "credentials": "dwd"}',
                               "application/json")):
        expect_error(http("POST", "/v1/subscriptions", raw=raw, content_type=content_type),
                     400, "invalid_argument")
    expect_error(http("GET", "/v1/unknown"), 404, "not_found")
    assert expect_error(http("PUT", "/v1/subscriptions"), 405, "method_not_allowed") == {
        "allowed": ["POST", "GET"]}
    assert http("TRACE", "/v1/subscriptions/nope")[2]["Allow"] == "GET, DELETE"
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/resume"),
                           ("POST", "/resync"), ("GET", "/changes"), ("GET", "/events"),
                           ("GET", "/events/e1")):
        expect_error(http(method, f"/v1/subscriptions/nope{suffix}"), 404, "not_found")
    expect_error(http("GET", "/v1/subscriptions/nope/events?page_token=forged"), 400,
                 "invalid_argument")
    status, document, _ = http("GET", "/v1/openapi.json")
    assert status == 200 and document["openapi"] == "3.1.0"
    status, config, _ = http("GET", "/v1/oauth/config")
    assert status == 200 and config["client_id"] == e2e.env["CALSYNC_OAUTH_CLIENT_ID"]
    assert config["access_type"] == "offline" and config["prompt"] == "consent"


@pytest.mark.skipif(not HAS_OAUTH, reason="functions/oauth.py (h-oauth) has not landed")
def test_connect_an_account_with_an_authorization_code(e2e: E2E, http: Http) -> None:
    redirect = "http://127.0.0.1:9/callback"
    control = e2e.env["CALENDAR_EMULATOR_CONTROL"]
    scopes = http("GET", "/v1/oauth/config")[1]["scopes"]
    request = urllib.request.Request(
        control + "auth/codes", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"user": USER, "redirect_uri": redirect, "scopes": scopes}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        code = json.loads(response.read())["code"]
    e2e.calendar(USER).events().insert(calendarId="primary",
                                       body=event_body("before connecting")).execute()
    body = {"calendar_id": "primary", "oauth": {"code": code, "redirect_uri": redirect}}
    status, sub, _ = http("POST", "/v1/subscriptions", body)
    assert status == 201 and sub["owner"] == USER and sub["credentials"] == "oauth"
    details = expect_error(http("POST", "/v1/subscriptions", body), 400, "invalid_argument")
    assert details["reason"] == "invalid_grant"  # a code works once
    synced(http, sub["id"], 1)  # the worker syncs with the sealed refresh token
    events, _ = read_events(http, sub["id"], limit=10)
    assert [e["summary"] for e in events.values()] == ["before connecting"]
    # The emulator's refresh tokens start "1//": sealed at rest, never answered or logged.
    from google.cloud import firestore

    db = firestore.Client(project=e2e.env["GOOGLE_CLOUD_PROJECT"])
    sealed = [d.to_dict()["sealed_refresh_token"] for d in db.collection("credentials").stream()]
    assert len(sealed) == 1 and sealed[0].startswith("v1.") and "1//" not in sealed[0]
    assert "1//" not in json.dumps(http("GET", f"/v1/subscriptions/{sub['id']}")[1])
    api_log = (e2e.run_dir / "function-api.log").read_text()
    assert '"operation":"create_subscription"' in api_log and "1//" not in api_log


FUZZ_SUB = "sub-for-fuzz"
_seeded: set[str] = set()


def _seed_fuzz_subscription(env: dict[str, str]) -> None:
    """A subscription with snapshots and a feed, so fuzzed reads reach Firestore."""
    if env["CALSYNC_API_URL"] in _seeded:
        return
    from google.cloud import firestore

    from tests.integration.api.feedwriter import FeedWriter, create_subscription, event

    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST":
                                      env["FIRESTORE_EMULATOR_HOST"]}):
        db = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"])
        create_subscription(db, FUZZ_SUB)
        writer = FeedWriter(db, FUZZ_SUB)
        writer.commit([event("known", "a"), event("e2", "b", location="x")])
        writer.commit([event("known", "c")], deleted=["e2"])
        db.close()
    status, page, _ = Http(env["CALSYNC_API_URL"])(
        "GET", f"/v1/subscriptions/{FUZZ_SUB}/events?include_deleted=true")
    assert status == 200 and [e["event_id"] for e in page["events"]] == ["e2", "known"]
    _seeded.add(env["CALSYNC_API_URL"])


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(request=requests(FUZZ_SUB))
def test_no_input_gets_a_5xx_over_http(local_stack: Any,
                                       request: tuple[str, str, bytes, str | None]) -> None:
    _seed_fuzz_subscription(local_stack.env)
    method, path, body, content_type = request
    status, payload, headers = Http(local_stack.env["CALSYNC_API_URL"])(
        method, path, raw=body if body else None, content_type=content_type)
    assert_one_shape(method, path, status, payload, headers)


def assert_one_shape(method: str, path: str, status: int, payload: Any, headers: Any) -> None:
    """No 5xx; JSON, an error in the one shape; a documented status; 405 with `Allow`."""
    assert status < 500, (method, path, payload)
    assert headers.get_content_type() == "application/json", (method, path, payload)
    if method != "HEAD":
        assert isinstance(payload, dict), (method, path, payload)
        if status >= 400:
            assert set(payload) == {"error"}, payload
            assert set(payload["error"]) == {"code", "message", "details"}, payload
    assert_documented(method, path, status, headers.get("Allow"))


def test_every_method_on_every_path_over_http(local_stack: Any) -> None:
    """Every method against every path template (a known subscription and event), and
    paths with control characters: what the framework's router, not ours, used to
    answer (an HTML 404) or ours answered wrongly (400 for a method, not 405)."""
    _seed_fuzz_subscription(local_stack.env)
    http = Http(local_stack.env["CALSYNC_API_URL"])
    for template, declared in document()["paths"].items():
        path = template.replace("{id}", FUZZ_SUB).replace("{event_id}", "known")
        # The declared ones are the other tests' (and would delete the seeded subscription).
        for method in (m for m in METHODS if m.lower() not in declared):
            status, payload, headers = http(method, path)
            assert status == 405, (method, path, payload)
            assert_one_shape(method, path, status, payload, headers)
    for method, path, expected in CONTROL_PATHS:
        status, payload, headers = http(method, path.replace("sub0001", FUZZ_SUB))
        assert_one_shape(method, path, status, payload, headers)
        assert status == expected, (method, path, payload)
