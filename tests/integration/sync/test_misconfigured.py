"""Our own misconfiguration is loud and never the user's fault (issue 10, item 8):
the run answers 500 (the task is retried), logs an ERROR, and the subscription
stays active with its lease released, so it recovers once the deployment is fixed."""

from __future__ import annotations

from typing import Any

import pytest

from functions.errors import Misconfigured
from functions.sync.engine import Outcome
from functions.sync.worker import SyncWorker
from tests.integration.sync.harness import Harness, HookedCalendar


def _misconfigured(_: int) -> None:
    raise Misconfigured("domain-wide delegation is not configured (CALSYNC_DELEGATION_SA)")


@pytest.fixture
def world(firestore_db: Any, calendar: Any) -> Harness:
    return Harness(firestore_db, calendar, "mona@example.com")


def test_misconfiguration_is_retried_loudly_and_leaves_the_subscription_alone(
    world: Harness,
) -> None:
    broken = HookedCalendar(world.calendar, _misconfigured)
    world.request()
    engine = world.engine(calendar=broken)
    answer = SyncWorker(lambda: engine).handle(b'{"subscription_id": "sub-1"}')
    assert answer.status == 500 and answer.reason.startswith("misconfigured")
    sub = world.store.get_subscription("sub-1")
    assert sub is not None and sub.status == "active" and sub.last_error is None
    assert not world.store.get_writer_state("sub-1").get("lease_until")  # released
    world.insert("after the fix")
    world.clock.advance(2.5)  # the task's retry, after MIN_SYNC_INTERVAL
    assert world.engine().run("sub-1").outcome is Outcome.SYNCED  # fixed: it just works
    assert [e.kind for e in world.feed()] == ["created"]
