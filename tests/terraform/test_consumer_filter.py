"""The consumer subscriptions' optional filter (DESIGN.md, "Accounts, lifecycle
events, watermark": field-level push filters): `var.consumer_filter` reaches the
push and the pull subscription, empty means no filter, and Pub/Sub's 256-byte
limit on a filter is checked at plan time. The filter itself is exercised on the
Pub/Sub emulator (tests/integration/outbox/test_field_filters.py)."""

from __future__ import annotations

from infra.tfcheck import hcl

from .conftest import TERRAFORM

WIRED = '${var.consumer_filter != "" ? var.consumer_filter : null}'


def test_both_consumer_subscriptions_take_the_optional_filter() -> None:
    config = hcl.load(TERRAFORM)
    for name in ("push", "pull"):
        block = config.resource("google_pubsub_subscription", name)
        assert block is not None, name
        assert block.body.get("filter") == WIRED, name
    # The dead-letter subscription keeps everything that was dead-lettered.
    dead_letter = config.resource("google_pubsub_subscription", "dead_letter")
    assert dead_letter is not None and "filter" not in dead_letter.body


def test_the_filter_variable_defaults_to_none_and_checks_pubsubs_limit() -> None:
    variable = hcl.load(TERRAFORM).variables["consumer_filter"]
    assert variable["default"] == ""
    assert "changed_start" in variable["description"]
    conditions = [v["condition"] for v in variable["validation"]]
    assert conditions == ["${length(var.consumer_filter) <= 256}"]
