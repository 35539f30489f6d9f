"""A full sync that crashed after its first page commit is resumed by the task's
retry, which has claimed a request recorded after the pass began listing (issue 19
item 5; Hypothesis found it in test_sync_stateful: seed, crash(('commit_page', 1,
False)), delete(pick=0), teardown).

The resumed pass goes on from its saved page token, so it cannot see a change made
to a page it listed before the crash. The webhook wrote nothing for notifications
that found the request pending (DESIGN.md: the run that claims it has not listed
yet), so the run that answers `synced` must have listed after every request it
claimed: it lists what changed since the resumed pass's token before committing.
"""

from __future__ import annotations

from typing import Any

from functions.sync.engine import Outcome

from .harness import Crash, CrashingStore, Harness, kinds


def test_resumed_first_sync_serves_the_request_it_claimed(firestore_db: Any,
                                                          calendar: Any) -> None:
    world = Harness(firestore_db, calendar, "erin@example.com", page_size=3)
    singles = [world.insert(f"single {day}", day=day)["id"] for day in range(1, 5)]
    try:
        world.sync(store=CrashingStore(world.db, "commit_page", 1))
    except Crash:
        world.expire_lease()
    state = world.store.get_writer_state(world.sub.id)
    assert state.get("sync_token") is None and "listing" in state  # a pass to resume
    world.delete(singles[0])  # on the page committed before the crash

    world.expire_lease()
    report = world.sync()  # the retry: resumes the pass, claims the new request

    assert report.outcome is Outcome.SYNCED and report.resumed, report
    entries = world.check()
    assert kinds(entries).count(("deleted", singles[0])) == 1
    assert sorted(k for k in kinds(entries) if k[0] == "created") == sorted(
        ("created", i) for i in singles)
    state = world.store.get_writer_state(world.sub.id)
    assert state["synced_gen"] == state["claimed_gen"], state
