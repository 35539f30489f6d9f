"""Which calendars of an account's list it follows (pure: no I/O).

`calendarList.list` cannot filter by role together with a sync token
(`minAccessRole` is refused with `syncToken`), so the account sync lists every
entry and applies the policy here: every run, full or incremental, decides the
same way. A full listing is then reconciled both ways against what the account
follows (`plan_full`): wanted and not followed → follow; followed and not
wanted (or not listed at all) → leave.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from functions.model import ACCESS_ROLES, OWNED_CALENDARS, CalendarPolicy

# Why a calendar is not (or no longer) followed: the `reason` of `calendar_removed`.
LEFT_LIST = "left_calendar_list"  # removed, unshared or deleted (or absent from a full listing)
BELOW_POLICY = "access_below_policy"  # the owner's role is under the policy's minimum
NOT_OWNED = "not_owned"  # the policy follows owned calendars only
EXCLUDED = "excluded"  # the policy names it in `exclude`


def normalised(calendar_id: str, owner: str) -> str:
    """A calendar's identity for an owner, as `subscription_keys` normalises it:
    lower-cased and stripped, `primary` being the owner's own address."""
    calendar = calendar_id.strip().lower()
    return owner.strip().lower() if calendar == "primary" else calendar


def role_rank(role: str | None) -> int:
    """The role's place, weakest first; -1 for none or an unknown word."""
    return ACCESS_ROLES.index(role) if role in ACCESS_ROLES else -1


def owned(entry: Mapping[str, Any], owner: str) -> bool:
    """The owner's own calendar: the primary, or a secondary one whose data owner is them
    (Google sets `dataOwner` for secondary calendars only)."""
    if entry.get("primary"):
        return True
    data_owner = entry.get("dataOwner")
    return isinstance(data_owner, str) and data_owner.strip().lower() == owner.strip().lower()


@dataclass(frozen=True)
class Decision:
    """Whether an entry of the list is followed; `reason` says why not."""

    calendar_id: str
    wanted: bool
    reason: str | None = None
    access_role: str | None = None


def decide(entry: Mapping[str, Any], owner: str, policy: CalendarPolicy) -> Decision:
    """The policy applied to one `calendarListEntry` (a removed one carries only `id` and
    `deleted`: nothing else is relied on for it)."""
    calendar_id = str(entry.get("id") or "")
    role = entry.get("accessRole") if isinstance(entry.get("accessRole"), str) else None
    if entry.get("deleted"):
        return Decision(calendar_id, False, LEFT_LIST)
    excluded = {normalised(c, owner) for c in policy.exclude}
    if normalised(calendar_id, owner) in excluded:
        return Decision(calendar_id, False, EXCLUDED, role)
    if role_rank(role) < max(role_rank(policy.min_access_role), role_rank("reader")):
        return Decision(calendar_id, False, BELOW_POLICY, role)
    if policy.calendars == OWNED_CALENDARS and not owned(entry, owner):
        return Decision(calendar_id, False, NOT_OWNED, role)
    return Decision(calendar_id, True, None, role)


@dataclass(frozen=True)
class Followed:
    """A subscription the account follows now: its id and credentials."""

    sub_id: str
    calendar_id: str
    credentials_ref: str


@dataclass(frozen=True)
class FullPlan:
    """A full listing reconciled with what is followed: the entries to follow (new, or
    followed with stale credentials) and the subscriptions to leave, with why."""

    follow: tuple[Decision, ...]
    leave: tuple[tuple[Followed, str], ...]


def plan_full(entries: Iterable[Mapping[str, Any]], owner: str, policy: CalendarPolicy,
              followed: Iterable[Followed], credentials_ref: str) -> FullPlan:
    """Reconcile a complete listing both ways. A calendar the listing does not hold
    left the list (Google's full listing omits removed entries); one it holds under
    the policy is followed unless it already is with the account's credentials."""
    decisions: dict[str, Decision] = {}
    for entry in entries:
        decision = decide(entry, owner, policy)
        if decision.calendar_id:
            decisions[normalised(decision.calendar_id, owner)] = decision
    current = {normalised(f.calendar_id, owner): f for f in followed}
    follow = tuple(d for key, d in decisions.items() if d.wanted and (
        key not in current or current[key].credentials_ref != credentials_ref))
    leave = tuple((f, (decisions[key].reason or LEFT_LIST) if key in decisions else LEFT_LIST)
                  for key, f in sorted(current.items())
                  if key not in decisions or not decisions[key].wanted)
    return FullPlan(follow, leave)
