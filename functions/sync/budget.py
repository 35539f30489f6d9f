"""Calendar call budgets (DESIGN.md, "Budgets"): how a sync run stays within them.

- Project: the sync queue's `max_dispatches_per_second` is the project-level
  limiter (`Settings.sync_dispatches_per_second`, the same formula in
  terraform/tasks.tf), so each task may make `calls_per_task` calls at most
  (`CallAllowance`): a pass that needs more stops after the page that spent them
  and goes on from its saved page token in a follow-up task, which the queue
  dispatches at its rate. No counter document: the queue does the counting. The
  budget (9,000 a minute by default) is what the queue's rate allows for; the
  quota's headroom above it covers the rare listing a pass cannot leave to the
  next task (after a 410). The watch of a run that must open a channel (a new
  subscription's first run, or one whose channel lapsed) is a call of the task's
  allowance: when it was the last, the listing is a follow-up task's, so
  onboarding subscriptions at the queue's full rate stays within the budget.
- Owner: a token bucket per owner (`UserBucket`), refilled at
  CALSYNC_USER_CALLS_PER_MINUTE and holding a tenth of it, spread over
  CALSYNC_USER_BUDGET_SHARDS documents with an equal share each; a subscription's
  runs take their allowance from one share (by its id, so an owner's calendars
  spread evenly over them), and when that share is short the run is deferred to a
  slot the share books for it (`UserBucket`), a task named for that time: never a
  failure, never a spin, and a burst comes back spread at the refill rate.
  Any 60 s then sees at most 1.1 x the budget for one owner (what the buckets
  hold plus a minute's refill), below Google's 600 per user with the default 480.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from functions.model import EventPage, Subscription
from functions.ports import CalendarPort

BURST_SHARE = 10  # a bucket holds 1/BURST_SHARE of a minute's budget


@dataclass(frozen=True)
class UserBucket:
    """One share of an owner's bucket: its rate, size, and the take rule.

    A share also keeps `booked_until`, the end of the slots it has given to deferred
    runs: a run that finds the share short (or finds runs waiting) is given the next
    slot, a take's worth of refill after the last, and comes back then; until the
    last slot has passed, only runs that come back for their slot take from it. So a
    burst of deferred runs comes back spread at the rate the share refills, each
    served once, instead of all at the same instant (where one would be served and
    the rest deferred again)."""

    per_minute: int
    shards: int

    @property
    def rate(self) -> float:
        """Calls per second this share refills by."""
        return self.per_minute / 60.0 / self.shards

    def capacity(self, calls: int) -> float:
        # Never smaller than one take: a take larger than the bucket would wait for ever.
        return max(float(calls), self.per_minute / BURST_SHARE / self.shards)

    def take(self, stored: dict[str, Any] | None, calls: int, now: datetime, *,
             booked: datetime | None = None,
             book: bool = True) -> tuple[dict[str, Any] | None, datetime | None]:
        """(fields to write or None, None when taken else when to come back); a new
        share starts full."""
        capacity = self.capacity(calls)
        tokens = capacity
        line: datetime | None = None
        if stored is not None and stored.get("at") is not None:
            elapsed = max(0.0, (now - stored["at"]).total_seconds())
            tokens = min(capacity, float(stored.get("tokens") or 0.0) + elapsed * self.rate)
            line = stored.get("booked_until")
        waiting = line is not None and line > now
        if tokens + 1e-9 >= calls and (not waiting or booked is not None):
            return {"tokens": tokens - calls, "at": now, "booked_until": line}, None
        ready = now + timedelta(seconds=max(0.0, calls - tokens) / self.rate)
        if not book:
            return None, max(ready, line) if waiting and line is not None else ready
        slot = max(ready, line) if waiting and line is not None else ready
        return ({"tokens": tokens, "at": now,
                 "booked_until": slot + timedelta(seconds=calls / self.rate)}, slot)


class CallAllowance(CalendarPort):
    """The listing calls one task may make: list pages through it. When a call at or
    past the allowance brings a page
    with more after it, `spent` is told: the pass begins no new page, saves where it
    stands, and a follow-up task goes on from there (so every task moves the pass
    on). A listing that ended needs no call to reconcile.

    Never refused: the one listing a pass cannot leave to the next task (the full
    listing after a 410, whose first page must be listed before anything is saved;
    the catch-up of a resumed pass) is made even past the allowance: a rare call
    more, inside the quota's headroom above the budget, rather than a task that
    could never end."""

    def __init__(self, calendar: CalendarPort, calls: int,
                 spent: Callable[[], None] = lambda: None) -> None:
        self._calendar = calendar
        self.left = calls
        self.spent = spent

    def spend(self) -> None:
        self.left -= 1

    def list_page(self, subscription: Subscription, *, sync_token: str | None,
                  page_token: str | None, page_size: int) -> EventPage:
        self.spend()
        page = self._calendar.list_page(subscription, sync_token=sync_token,
                                        page_token=page_token, page_size=page_size)
        if self.left <= 0 and page.next_page_token:
            self.spent()
        return page
