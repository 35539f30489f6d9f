"""examples/consumer over real HTTP on loopback: push envelopes in, lines out,
duplicates dropped, gaps and markers filled from a (fake) changes route, and in
production mode the OIDC token verified against a locally served key set."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from examples import consumer as example

from .conftest import FakeFeed, KeySet

SUB = "3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e"
AUDIENCE = "https://consumer.example.com/push"
PUSH_SA = "push@calsync-test.iam.gserviceaccount.com"


def entry(seq: int, kind: str = "updated", event_id: str = "ev1",
          fields: dict[str, Any] | None = None) -> dict[str, Any]:
    if fields is None:
        fields = {"summary": {"before": "Kick-off", "after": "Kick-off (all hands)"}}
    return {"seq": seq, "kind": kind, "event_id": event_id, "recurring_event_id": None,
            "fields": fields, "etag": '"1"', "at": "2026-11-30T12:00:00Z",
            "expire_at": "2026-12-30T12:00:00Z"}


def envelope(item: dict[str, Any], sub_id: str = SUB, truncated: bool = False) -> bytes:
    attributes = {"subscription_id": sub_id, "seq": str(item["seq"]), "kind": item["kind"],
                  "ce-specversion": "1.0"}
    if item.get("event_id") is not None:  # lifecycle entries have none
        attributes["event_id"] = item["event_id"]
    data = item
    if truncated:
        attributes["truncated"] = "true"
        data = {"seq": item["seq"], "kind": item["kind"], "event_id": item.get("event_id"),
                "truncated": True}
    return json.dumps({
        "message": {"data": base64.b64encode(json.dumps(data).encode()).decode(),
                    "attributes": attributes, "messageId": f"m{item['seq']}"},
        "subscription": "projects/calsync-test/subscriptions/push",
    }).encode()


def post(url: str, body: bytes, token: str | None = None,
         method: str = "POST") -> tuple[int, str]:
    request = urllib.request.Request(url, data=body if method == "POST" else None,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Running:
    def __init__(self, serve: Callable[[Any], str], **options: Any) -> None:
        self.feed = FakeFeed()
        self.lines: list[str] = []
        api = serve(self.feed)
        self.consumer = example.Consumer(example.ChangesClient(api), out=self.lines.append,
                                         **options)
        self.url = serve(self.consumer)


def test_prints_each_change_once_and_fills_a_gap_from_the_changes_route(
        serve: Callable[[Any], str]) -> None:
    world = Running(serve)
    world.feed.entries[SUB] = [entry(n, "created", f"ev{n}",
                                     {"summary": {"before": None, "after": f"Event {n}"}})
                               for n in range(1, 7)] + [entry(7)]
    for seq in (1, 2):
        assert post(world.url, envelope(world.feed.entries[SUB][seq - 1]))[0] == 204
    assert post(world.url, envelope(world.feed.entries[SUB][1]))[0] == 204  # duplicate
    assert world.feed.requests == []
    assert post(world.url, envelope(entry(7)))[0] == 204  # 3..6 never came
    assert world.feed.requests == [(SUB, 2)]
    assert post(world.url, envelope(world.feed.entries[SUB][4]))[0] == 204  # late copy of 5
    assert world.lines == [
        "subscription 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e, seq 1, created: 'Event 1' (ev1)",
        "subscription 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e, seq 2, created: 'Event 2' (ev2)",
        "subscription 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e, seq 3, created: 'Event 3' (ev3)",
        "subscription 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e, seq 4, created: 'Event 4' (ev4)",
        "subscription 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e, seq 5, created: 'Event 5' (ev5)",
        "subscription 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e, seq 6, created: 'Event 6' (ev6)",
        f"subscription {SUB}, seq 7, updated: summary 'Kick-off' → 'Kick-off (all hands)'",
    ]


def test_a_truncated_marker_is_read_from_the_changes_route(
        serve: Callable[[Any], str]) -> None:
    world = Running(serve, start_cursors={SUB: 3})
    big = entry(4, "deleted", "ev9", {"summary": {"before": "Offsite", "after": None},
                                      "description": {"before": "x" * 50, "after": None}})
    world.feed.entries[SUB] = [entry(n) for n in (1, 2, 3)] + [big]
    assert post(world.url, envelope(big, truncated=True))[0] == 204
    assert world.feed.requests == [(SUB, 3)]
    assert world.lines == [f"subscription {SUB}, seq 4, deleted: 'Offsite' (ev9)"]


def test_a_gap_the_api_cannot_serve_yet_is_redelivered_not_acknowledged(
        serve: Callable[[Any], str]) -> None:
    world = Running(serve, start_cursors={SUB: 0})
    world.feed.entries[SUB] = [entry(1)]
    status, reason = post(world.url, envelope(entry(3)))
    assert status == 503 and "seq 2..3" in reason
    assert world.consumer.applied[SUB] == 1


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "body is not JSON"),
    (b"[]", "no message"),
    (b'{"message": {"data": "e30="}}', "no attributes"),
    (b'{"message": {"data": "e30=", "attributes": {"seq": "1"}}}', "subscription_id"),
    (b'{"message": {"data": "%%%", "attributes": {"subscription_id": "s", "seq": "1"}}}',
     "base64"),
    (b'{"message": {"data": "eyJzZXEiOiAyfQ==", "attributes": {"subscription_id": "s", '
     b'"seq": "1"}}}', "not the entry"),
])
def test_malformed_pushes_get_a_400_with_a_reason(serve: Callable[[Any], str], body: bytes,
                                                  reason: str) -> None:
    world = Running(serve)
    status, text = post(world.url, body)
    assert status == 400 and reason in text and text.count("\n") == 1
    assert world.lines == []


def test_only_post_is_accepted(serve: Callable[[Any], str]) -> None:
    assert post(Running(serve).url, b"", method="GET")[0] == 405


def test_production_mode_verifies_the_push_token_against_the_key_set(
        serve: Callable[[Any], str]) -> None:
    keys, other = KeySet(), KeySet()
    certs = serve(keys.certs)
    world = Running(serve, push_auth=example.PushIdentity(AUDIENCE, PUSH_SA, certs_url=certs))
    body = envelope(entry(1))
    assert post(world.url, body)[0] == 401
    assert post(world.url, body, token="not-a-jwt")[0] == 401
    assert post(world.url, body, token=keys.token(aud="https://elsewhere"))[0] == 401
    assert post(world.url, body, token=other.token(aud=AUDIENCE))[0] == 401
    assert post(world.url, body, token=keys.token(aud=AUDIENCE, exp=1, iat=0))[0] == 401
    assert post(world.url, body, token=keys.token(aud=AUDIENCE,
                                                  iss="https://evil.example"))[0] == 401
    assert post(world.url, body, token=keys.token(
        aud=AUDIENCE, email="someone@else.iam.gserviceaccount.com"))[0] == 403
    assert world.lines == []
    status, _ = post(world.url, body, token=keys.token(aud=AUDIENCE))
    assert status == 204
    assert world.lines == [
        f"subscription {SUB}, seq 1, updated: summary 'Kick-off' → 'Kick-off (all hands)'"]
