"""A stateful property test: random calendar mutations, syncs, crashes, token
invalidations, lease takeovers and duplicate tasks. At every quiet point:
(a) live snapshots equal a full listing (ids and etags), (b) folding the feed
from cursor 0 reproduces the live snapshots, (c) `seq` is dense and increasing.
"""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from functions.sync.engine import Outcome
from infra.local import components

from .harness import Crash, CrashingStore, Harness, HookedCalendar

PROJECT = "calsync-test"
CRASH_POINTS = st.sampled_from([
    ("commit_page", 1, False), ("commit_page", 2, False), ("commit_page", 3, False),
    ("commit_final", 1, True), ("commit_final", 1, False), ("iter_live_ids", 1, False),
])


def test_sync_converges_under_random_histories(firestore_emulator: str, calendar_emulator: Any):
    from google.cloud import firestore

    db = firestore.Client(project=PROJECT)

    class SyncMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            components.reset_firestore(firestore_emulator, PROJECT)
            calendar_emulator.control.reset()
            self.world = Harness(db, calendar_emulator, "erin@example.com", page_size=3)
            self.singles: list[str] = []
            self.series: list[str] = []
            self.day = 0

        def _api(self, call: Any) -> Any:
            try:
                return call()
            except HttpError as err:
                if err.status_code in (404, 410):
                    return None  # already deleted: fine for a random history
                raise

        @initialize()
        def seed(self) -> None:
            for _ in range(4):
                self.create()

        @rule()
        def create(self) -> None:
            self.day += 1
            self.singles.append(self.world.insert(f"single {self.day}", day=self.day)["id"])

        @rule(count=st.integers(2, 4))
        def create_series(self, count: int) -> None:
            self.day += 1
            self.series.append(self.world.insert_series(f"series {self.day}", count,
                                                        day=self.day)["id"])

        @rule(pick=st.integers(0, 50), text=st.sampled_from(["a", "b", "c"]))
        def update(self, pick: int, text: str) -> None:
            if self.singles:
                event_id = self.singles[pick % len(self.singles)]
                self._api(lambda: self.world.patch(event_id, summary=text))

        @rule(pick=st.integers(0, 50))
        def delete(self, pick: int) -> None:
            if self.singles:
                event_id = self.singles.pop(pick % len(self.singles))
                self._api(lambda: self.world.delete(event_id))

        @rule(pick=st.integers(0, 50), which=st.integers(0, 3), cancel=st.booleans())
        def edit_instance(self, pick: int, which: int, cancel: bool) -> None:
            if not self.series:
                return
            series_id = self.series[pick % len(self.series)]
            instances = self._api(lambda: self.world.instances(series_id)) or []
            if not instances:
                return
            instance_id = instances[which % len(instances)]["id"]
            if cancel:
                self._api(lambda: self.world.delete(instance_id))
            else:
                self._api(lambda: self.world.patch(instance_id, summary=f"moved {which}"))

        @rule(pick=st.integers(0, 50))
        def delete_series(self, pick: int) -> None:
            if self.series:
                series_id = self.series.pop(pick % len(self.series))
                self._api(lambda: self.world.delete(series_id))

        @rule()
        def sync(self) -> None:
            self.world.sync()

        @rule()
        def duplicate_tasks(self) -> None:
            self.world.sync()
            self.world.sync()

        @rule(point=CRASH_POINTS)
        def crash(self, point: tuple[str, int, bool]) -> None:
            method, after, before = point
            try:
                self.world.sync(store=CrashingStore(db, method, after, before=before))
            except Crash:
                self.world.expire_lease()

        @rule()
        def invalidate_token(self) -> None:
            calendar_emulator.control.invalidate_sync_tokens(self.world.user)

        @rule()
        def lease_takeover(self) -> None:
            world = self.world

            def take_over(call: int) -> None:
                if call == 2:
                    world.expire_lease()
                    world.sync()

            world.sync(calendar=HookedCalendar(world.calendar, take_over))

        @rule()
        def quiet_point(self) -> None:
            self.world.expire_lease()
            report = self.world.sync()
            assert report.outcome is Outcome.SYNCED, report
            self.world.check()

        def teardown(self) -> None:
            self.quiet_point()

    run_state_machine_as_test(SyncMachine, settings=settings(
        max_examples=30, stateful_step_count=20, deadline=None,
        suppress_health_check=list(HealthCheck)))
    db.close()


pytestmark = pytest.mark.slow
