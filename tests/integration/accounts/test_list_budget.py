"""A calendar-list run takes its call from its owner's budget (DESIGN.md, "Budgets"),
on the Firestore and Calendar emulators: over it, the run makes no call, lets go of
its lease until the slot the owner's share books, and its task (named for that time)
lists then; the calendar shared meanwhile is followed, nothing fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from functions.adapters.firestore.budget import FirestoreCallBudget, budget_share_id
from functions.adapters.firestore.catalogue import CALL_BUDGETS
from tests.integration.accounts.conftest import ANN, BOB, build_world


def test_a_list_run_over_its_owners_budget_waits_for_its_slot(
        firestore_db: Any, calendar: Any, serve: Callable[[Any], str]) -> None:
    calendar.control.configure(retryInitialSeconds=0.05)
    # 12 calls a minute on one share: it holds 1.2, refilled at 0.2 a second.
    budget = FirestoreCallBudget(firestore_db, per_minute=12, shards=1)
    world = build_world(firestore_db, calendar, serve, budget=budget)
    control = world.control
    control.add_user(ANN)
    control.add_user(BOB)
    lent = world.api(BOB).calendars().insert(body={"summary": "lent"}).execute()["id"]
    account_id = world.account_service.connect(ANN, "bearer").account.id
    world.drain()  # the first listing: the share's one call
    lists = int(control.counters()["calls"].get("calendarList.list", 0))

    started = time.monotonic()
    control.share_calendar(lent, ANN, "reader")
    answers = world.drain()
    elapsed = time.monotonic() - started
    # A run found the share short: no call, and a task named for its slot ...
    slots = [name for name in world.queue.names
             if name.startswith("list-retry-") and name.endswith(account_id)]
    assert slots, world.queue.names
    assert all(status < 500 for _, status in answers), answers
    share = firestore_db.collection(CALL_BUDGETS).document(budget_share_id(ANN, 0)).get()
    assert share.to_dict()["booked_until"] is not None
    # ... and the list calls stayed within what the share held and refilled meanwhile.
    made = int(control.counters()["calls"].get("calendarList.list", 0)) - lists
    assert 1 <= made <= 1.2 + 0.2 * elapsed, (made, elapsed)
    assert lent in world.followed(account_id)
