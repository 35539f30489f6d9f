"""An account in a chaos history: its calendars shared and unshared while the history
runs, each share or unshare with a fault on the calendar-list path beside it.

The account (connected as the CLI does, `dwd`-style credentials) follows every
readable calendar of its owner's list but one it excludes. A lender shares three
calendars with the owner and takes them back during the history: one at a role
under the policy (free/busy only), raised to `reader` later; one unshared and
shared again. The faults, one per step (`STEPS`): the list channel's push dropped,
duplicated or delayed (counted by the emulator for that channel), calendarList.list
answering 503 twice and 429 once (answered: the method called that often after),
every list sync token of the owner invalidated while the unshare's push is dropped
(a relisting after a 410 must find it: the worker logs such a run), and
calendarList.watch refused once (answered at the list channel's next renewal).

The account's calendars are written to by the history like the others (the
lender's through the lender's client), and the converged state is checked by
`invariants.account_problems` and, for each calendar it follows, as every
subscription is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.model import CalendarPolicy
from infra.calendar_emulator.testing import calendar_service
from tests.faults import invariants
from tests.faults.history import Cal, History
from tests.faults.invariants import Watched

OWNER = "chaos-account@example.com"
LENDER = "chaos-lender@example.com"
EVIDENCE_WAIT = 10.0  # seconds a push fault on the list channel has to act
# (progress, step name, fault kind or "" for none): see the module docstring.
STEPS = (
    (0.10, "share_0_reader", "calendar_list_push_drop"),
    (0.20, "share_1_free_busy", "calendar_list_5xx"),
    (0.28, "share_2_writer", "calendar_list_429"),
    (0.40, "unshare_0", "calendar_list_push_dup"),
    (0.52, "unshare_2", "calendar_list_410"),
    (0.62, "raise_1_to_reader", "calendar_list_push_delay"),
    (0.74, "share_2_again", "calendar_list_watch_refused"),
)
SCRIPTED_KINDS = [kind for _, _, kind in STEPS if kind]
# A push fault on the list channel, and the emulator's count for it that shows it acted.
PUSH_OUTCOMES = {"calendar_list_push_drop": "dropped", "calendar_list_push_dup": "duplicated",
                 "calendar_list_push_delay": "delivered"}


@dataclass
class AccountChaos:
    """The account, its lender, and the steps that share, unshare and inject."""

    control: Any
    db: Any
    base_url: str
    run_dir: Path
    account_id: str = ""
    policy: CalendarPolicy = field(default_factory=CalendarPolicy)
    api: Any = None  # acting as OWNER
    lender_api: Any = None
    lent: list[str] = field(default_factory=list)
    cals: list[Cal] = field(default_factory=list)  # every calendar of the two, to write to
    relists_before: int = 0  # list runs after a 410 before the tokens were invalidated

    def create(self, connect: Callable[[str, CalendarPolicy], str]) -> None:
        """The two users and their calendars; the account connected (`connect(owner,
        policy)` returns its id) with one own calendar excluded by its policy."""
        primary = self.control.add_user(OWNER)
        self.control.add_user(LENDER)
        self.api = calendar_service(self.base_url, OWNER)
        self.lender_api = calendar_service(self.base_url, LENDER)
        own = [self.api.calendars().insert(body={"summary": f"account own {n}"}).execute()["id"]
               for n in range(2)]
        self.lent = [self.lender_api.calendars().insert(
            body={"summary": f"lent {n}"}).execute()["id"] for n in range(3)]
        self.policy = CalendarPolicy(exclude=(own[1],))
        self.account_id = connect(OWNER, self.policy)
        self.cals = ([Cal(Watched(c, OWNER, self.api)) for c in (primary, *own)]
                     + [Cal(Watched(c, LENDER, self.lender_api)) for c in self.lent])
        # Its first listing done and its list channel open before the history starts
        # (a push fault needs the channel's id).
        want = invariants.wanted_calendars(self.api, OWNER, self.policy)
        deadline = time.monotonic() + 60
        while not (self.list_channel() and set(
                invariants.account_followed(self.db, self.account_id)) == want):
            assert time.monotonic() < deadline, "the account's first listing never completed"
            time.sleep(0.2)

    def schedule(self, history: History) -> None:
        history.scripted_kinds.extend(SCRIPTED_KINDS)
        actions: dict[str, Callable[[], Any]] = {
            "share_0_reader": lambda: self.control.share_calendar(self.lent[0], OWNER, "reader"),
            "share_1_free_busy": lambda: self.control.share_calendar(
                self.lent[1], OWNER, "freeBusyReader"),
            "share_2_writer": lambda: self.control.share_calendar(self.lent[2], OWNER, "writer"),
            "unshare_0": lambda: self.control.unshare_calendar(self.lent[0], OWNER),
            "unshare_2": lambda: self.control.unshare_calendar(self.lent[2], OWNER),
            "raise_1_to_reader": lambda: self.control.share_calendar(self.lent[1], OWNER,
                                                                     "reader"),
            "share_2_again": lambda: self.control.share_calendar(self.lent[2], OWNER, "reader"),
        }
        for progress, name, kind in STEPS:
            history.at(progress, name, self._step(actions[name], kind))

    # -- the steps ------------------------------------------------------------------------

    def list_channel(self) -> str:
        data = self.db.document(f"accounts/{self.account_id}").get().to_dict() or {}
        return str(data.get("channel_id") or "")

    def _by_channel(self, outcome: str, channel_id: str) -> int:
        return int(self.control.counters().get("by_channel", {}).get(
            f"{outcome}:{channel_id}", 0))

    def _step(self, action: Callable[[], Any], kind: str) -> Callable[[History], None]:
        def step(history: History) -> None:
            if kind:
                history.tally[f"fault_{kind}"] += 1
            if kind in PUSH_OUTCOMES:
                self._push_fault(history, kind, action)
                return
            if kind == "calendar_list_5xx":
                history.inject(kind, "calendarList.list", 503, "backendError", count=2)
            elif kind == "calendar_list_429":
                history.inject(kind, "calendarList.list", 429, "rateLimitExceeded")
            elif kind == "calendar_list_watch_refused":
                history.inject(kind, "calendarList.watch", 503, "backendError")
            elif kind == "calendar_list_410":
                self.relists_before = self.relists()
                self.control.invalidate_calendar_list_tokens(OWNER)
                channel = self.list_channel()
                self.control.drop_notifications(1, channel_id=channel)
                action()
                self._wait(lambda: self._by_channel("dropped", channel) > 0)
                self.control.clear_notification_faults(channel_id=channel)
                return
            action()

        return step

    def _push_fault(self, history: History, kind: str, action: Callable[[], Any]) -> None:
        """The fault on the list channel alone, the action, and the emulator's count
        for that channel as the evidence it acted (a global push fault of the history
        would not clear it: the history changes those only between steps)."""
        channel = self.list_channel()
        outcome = PUSH_OUTCOMES[kind]
        before = self._by_channel(outcome, channel)
        if kind == "calendar_list_push_drop":
            self.control.drop_notifications(1, channel_id=channel)
        elif kind == "calendar_list_push_dup":
            self.control.duplicate_notifications(1, channel_id=channel)
        else:
            self.control.delay_notifications(1.5, channel_id=channel)
        action()
        if self._wait(lambda: self._by_channel(outcome, channel) > before):
            history.took_effect(kind)
        self.control.clear_notification_faults(channel_id=channel)

    @staticmethod
    def _wait(done: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + EVIDENCE_WAIT
        while not done():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def relists(self) -> int:
        """List runs the worker logged as a full listing after a 410."""
        return sum(line.count('"mode":"full_after_410"') for path in
                   self.run_dir.glob("function-*.log") for line in
                   path.read_text(errors="replace").splitlines() if '"list run"' in line)

    def prove(self, history: History) -> None:
        """After the history: the 410 acted if a list run relisted after it."""
        if history.tally["fault_calendar_list_410"] and self.relists() > self.relists_before:
            history.took_effect("calendar_list_410")

    # -- the converged state ----------------------------------------------------------------

    def watched(self) -> list[Watched]:
        """Each calendar the policy picks now, read as the account's owner."""
        return [Watched(c, OWNER, self.api)
                for c in sorted(invariants.wanted_calendars(self.api, OWNER, self.policy))]

    def problems(self) -> list[str]:
        return invariants.account_problems(self.db, self.account_id, OWNER, self.api,
                                           self.policy, self.control)
