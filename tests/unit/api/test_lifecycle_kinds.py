"""Lifecycle kinds and the watermark in `/v1` (DESIGN.md, "Accounts, lifecycle
events, watermark"): `kinds=` accepts every lifecycle kind, the OpenAPI document
lists them, says consumers ignore kinds they do not know, and makes
`complete_as_of` part of the subscription and of both pages."""

from __future__ import annotations

from typing import Any

from functions.api.openapi import document
from functions.model import FEED_KINDS, LIFECYCLE_KINDS
from tests.unit.api.test_routes import DWD, error, post


def test_kinds_selects_lifecycle_kinds(client: Any, world: Any) -> None:
    sub_id = post(client, "/v1/subscriptions", DWD).get_json()["id"]
    world.entries[sub_id] = 4
    base = f"/v1/subscriptions/{sub_id}/changes"
    every = client.get(base + "?kinds=" + ",".join(FEED_KINDS))
    assert every.status_code == 200, every.get_data(as_text=True)
    for kind in LIFECYCLE_KINDS:
        assert client.get(f"{base}?kinds={kind}").status_code == 200, kind
    assert "complete_as_of" in every.get_json()
    error(client.get(base + "?kinds=deleted,renamed"), 400, "invalid_argument")


def test_the_document_lists_the_kinds_and_the_watermark() -> None:
    schemas = document()["components"]["schemas"]
    kind = schemas["ChangeEntry"]["properties"]["kind"]["description"]
    for name in FEED_KINDS:
        assert f"`{name}`" in kind, name
    assert "ignores (and moves past) kinds it" in kind
    assert "dev.calsync.subscription.deleted" in kind
    assert schemas["ChangeEntry"]["properties"]["event_id"]["type"] == ["string", "null"]
    for schema in ("Subscription", "ChangePage", "EventPage"):
        assert "complete_as_of" in schemas[schema]["required"], schema
        assert schemas[schema]["properties"]["complete_as_of"]["format"] == "date-time"
