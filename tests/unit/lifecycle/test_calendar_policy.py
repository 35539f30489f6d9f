"""The account policy and the reconciliation of a full listing (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.lifecycle.calendar_policy import (
    BELOW_POLICY,
    EXCLUDED,
    LEFT_LIST,
    NOT_OWNED,
    Followed,
    decide,
    normalised,
    plan_full,
)
from functions.model import CalendarPolicy

OWNER = "Ann@Example.com"


def entry(calendar_id: str, role: str = "reader", **extra: Any) -> dict[str, Any]:
    return {"kind": "calendar#calendarListEntry", "id": calendar_id, "accessRole": role, **extra}


def test_all_readable_calendars_is_the_default() -> None:
    policy = CalendarPolicy()
    assert decide(entry("a@x", "reader"), OWNER, policy).wanted
    assert decide(entry("b@x", "owner"), OWNER, policy).wanted
    busy = decide(entry("c@x", "freeBusyReader"), OWNER, policy)
    assert (busy.wanted, busy.reason) == (False, BELOW_POLICY)  # its events cannot be listed


@pytest.mark.parametrize(("minimum", "role", "wanted"), [
    ("reader", "reader", True), ("writer", "reader", False),
    ("writer", "writerWithoutPrivateAccess", False), ("writer", "writer", True),
    ("writer", "owner", True), ("owner", "writer", False), ("owner", "owner", True),
])
def test_a_minimum_access_role(minimum: str, role: str, wanted: bool) -> None:
    decision = decide(entry("a@x", role), OWNER, CalendarPolicy(min_access_role=minimum))
    assert decision.wanted is wanted
    assert decision.reason == (None if wanted else BELOW_POLICY)


def test_owned_means_the_primary_or_a_calendar_whose_data_owner_is_the_owner() -> None:
    owned = CalendarPolicy(calendars="owned")
    assert decide(entry("ann@example.com", "owner", primary=True), OWNER, owned).wanted
    assert decide(entry("s1@group", "owner", dataOwner="ann@example.com"), OWNER, owned).wanted
    # Someone else's calendar with the owner role is not owned (Google: the owner role is
    # not the data owner).
    theirs = decide(entry("s2@group", "owner", dataOwner="bob@example.com"), OWNER, owned)
    assert (theirs.wanted, theirs.reason) == (False, NOT_OWNED)


def test_excluded_ids_are_normalised_and_primary_is_the_owner() -> None:
    policy = CalendarPolicy(exclude=(" Team@Group ", "primary"))
    assert decide(entry("team@group"), OWNER, policy).reason == EXCLUDED
    assert decide(entry("ann@example.com", "owner", primary=True), OWNER, policy).reason == EXCLUDED
    assert decide(entry("other@group"), OWNER, policy).wanted


def test_a_removed_entry_carries_only_its_id() -> None:
    decision = decide({"id": "gone@group", "deleted": True}, OWNER, CalendarPolicy())
    assert (decision.calendar_id, decision.wanted, decision.reason) == ("gone@group", False,
                                                                        LEFT_LIST)


def test_an_unknown_role_is_below_every_policy() -> None:
    assert not decide(entry("a@x", "none"), OWNER, CalendarPolicy()).wanted
    assert not decide({"id": "a@x"}, OWNER, CalendarPolicy()).wanted


def test_the_policy_round_trips_as_stored() -> None:
    policy = CalendarPolicy(calendars="owned", min_access_role="writer", exclude=("a", "b"))
    assert CalendarPolicy.from_json(policy.to_json()) == policy
    assert CalendarPolicy.from_json(None) == CalendarPolicy()


def test_normalised_matches_subscription_keys() -> None:
    assert normalised(" Primary ", OWNER) == "ann@example.com"
    assert normalised("X@Group", OWNER) == "x@group"


# -- reconciliation of a full listing ---------------------------------------------------

REF = "oauth:new"


def test_a_full_listing_reconciles_both_ways() -> None:
    listing = [entry("ann@example.com", "owner", primary=True), entry("kept@g"),
               entry("new@g", "writer"), entry("dropped@g", "freeBusyReader")]
    followed = [Followed("s-primary", "primary", REF), Followed("s-kept", "kept@g", REF),
                Followed("s-dropped", "dropped@g", REF), Followed("s-gone", "gone@g", REF)]
    plan = plan_full(listing, OWNER, CalendarPolicy(), followed, REF)
    assert [d.calendar_id for d in plan.follow] == ["new@g"]
    assert {(f.sub_id, reason) for f, reason in plan.leave} == {
        ("s-dropped", BELOW_POLICY), ("s-gone", LEFT_LIST)}


def test_followed_with_another_credential_is_followed_again() -> None:
    plan = plan_full([entry("a@g")], OWNER, CalendarPolicy(), [Followed("s", "a@g", "oauth:old")],
                     REF)
    assert [d.calendar_id for d in plan.follow] == ["a@g"] and plan.leave == ()


def test_an_empty_listing_leaves_everything_and_nothing_twice() -> None:
    followed = [Followed("s1", "a@g", REF), Followed("s2", "A@G ", REF)]
    plan = plan_full([], OWNER, CalendarPolicy(), followed, REF)
    # Two subscriptions of one calendar cannot exist (one key per calendar and owner):
    # the plan leaves one row per normalised calendar.
    assert len(plan.leave) == 1 and plan.follow == ()


def test_a_listing_with_a_removed_entry_and_the_same_id_listed_again() -> None:
    """Pages of one listing may show an id removed then back (a change while paging):
    the last word counts."""
    plan = plan_full([{"id": "a@g", "deleted": True}, entry("a@g")], OWNER, CalendarPolicy(),
                     [], REF)
    assert [d.calendar_id for d in plan.follow] == ["a@g"]
