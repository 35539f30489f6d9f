"""Random histories with faults, driven the way users, operators and Google drive calsync.

- Calendar writes go through the Calendar emulator's API with the real client (the
  emulator pushes real notifications to the webhook).
- Subscribe, pause and resume go through the subscription service in-process, as the
  CLI does.
- Scripted steps (`at`) run at a point of the history (an account's calendars
  shared and unshared, each with a fault on its calendar-list path).
- Faults go through the emulator's control API (events.list 500/503/429/403/410,
  rate limits, failing watches and stops, dropped, duplicated and delayed
  notifications), plus whatever extra faults a test brings (a refusing Cloud Tasks
  proxy, a killed worker, Firestore errors, ...).

Everything is drawn from one seeded `random.Random`, and every fault kind is tallied.
Each fault is also shown to have taken effect where it happened (`taken`): an
injected Calendar failure is answered (the emulator counted at least as many
calls of the method after it was injected as there were failures queued up to
it), a rate limit refused a run of its user, pushes were dropped, duplicated or
sent while delayed; extra faults record their own evidence with `took_effect`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from googleapiclient.errors import HttpError

from tests.faults.invariants import Watched

RETRIED_WRITE_STATUSES = (403, 429, 500, 502, 503)
# Faults whose effect lasts RATE_LIMIT_DELAY (30 s without Retry-After): early only.
EARLY_ONLY = frozenset({"list_429", "list_403_rate", "rate_limit"})


def _epoch(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def subscribe(service: Any, calendar_id: str, owner: str) -> str:
    """Subscribe as the CLI does; the subscription id (both result shapes)."""
    result = service.subscribe(calendar_id, owner, "bearer")
    sub = getattr(result, "subscription", None)
    if sub is None:
        sub = result[0]  # the older (Subscription, OpenedChannel) shape
    return str(sub.id)


def event_body(rng: random.Random, summary: str) -> dict[str, Any]:
    day = rng.randint(1, 28)
    hour = rng.randint(6, 20)
    return {"summary": summary,
            "start": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:00:00Z"},
            "end": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:30:00Z"}}


@dataclass
class Cal:
    watched: Watched
    events: list[str] = field(default_factory=list)
    sub_id: str | None = None


@dataclass
class _Undo:
    """A timed fault's lifting: at `deadline`, or with `until`, once it acted."""

    deadline: float
    what: str
    undo: Callable[[], None]
    until: Callable[[], bool] | None
    bound: float

    def acted(self) -> bool:
        return self.until is None or self.until()

    def due(self, now: float) -> bool:
        return now >= self.deadline and (self.acted() or now >= self.bound)


class History:
    """One random history over `cals`; `run()` until enough mutations are done."""

    def __init__(self, rng: random.Random, control: Any, service: Any, cals: list[Cal],
                 extra_faults: dict[str, Callable[[History], None]] | None = None) -> None:
        self.rng, self.control, self.service, self.cals = rng, control, service, cals
        self.extra = dict(extra_faults or {})
        self.tally: Counter[str] = Counter()
        self.mutations = 0
        self.progress = 0.0
        self._undo: list[_Undo] = []
        self._paused: Cal | None = None
        self._failed: list[Cal] = []
        # Injected Calendar failures, in order: (kind, method, how many, the method's
        # call count right after they were queued).
        self._injected: list[tuple[str, str, int, int]] = []
        self.taken: Counter[str] = Counter()  # fault kind -> evidence that it acted
        self.rate_limits: list[tuple[str, float, float]] = []  # (user, from, to) wall time
        # Pause a subscription while its run's watch is in flight (a test hook that
        # holds the watch; it subscribes, pauses and returns True when it did).
        self.pause_during_watch: Callable[[History, Cal], bool] | None = None
        self.evidence_checks: list[Callable[[], None]] = []  # run once the history ends
        self.budgets: list[str] = []  # hook budgets a test armed (dropped at quiet)
        self.db: Any = None
        self.holding_until = 0.0  # monotonic: a held watch must not be killed before then
        # Scripted steps (progress, name, step), run once the history reaches them; the
        # fault kinds they inject (`scripted_kinds`) must be shown to act like the rest.
        self.steps: list[tuple[float, str, Callable[[History], None]]] = []
        self.scripted_kinds: list[str] = []

    # -- scheduling -------------------------------------------------------------

    def later(self, seconds: float, what: str, undo: Callable[[], None],
              until: Callable[[], bool] | None = None, bound: float = 20.0) -> None:
        """Run `undo` once `seconds` have passed (checked between steps and at quiet).
        With `until`: not before `until()` holds (the fault met something to act
        on), yet at most `bound` seconds, at quiet too."""
        now = time.monotonic()
        self._undo.append(_Undo(now + seconds, what, undo, until, now + max(bound, seconds)))

    def pending_undos(self) -> int:
        return len(self._undo)

    def run_due(self) -> None:
        """Lift the timed faults whose time has come (for a step that waits)."""
        self._due()

    def _due(self, everything: bool = False) -> None:
        now = time.monotonic()
        keep = []
        for entry in self._undo:
            if everything or entry.due(now):
                entry.undo()
                self.tally[f"undo_{entry.what}"] += 1
            else:
                keep.append(entry)
        self._undo = keep

    def _await_held(self) -> None:
        """Let each fault waiting to act act (bounded), before lifting it."""
        while any(entry.until is not None and not entry.acted() and
                  time.monotonic() < entry.bound for entry in self._undo):
            time.sleep(0.2)

    def at(self, progress: float, name: str, step: Callable[[History], None]) -> None:
        """Run `step` once the history has done `progress` of its mutations."""
        self.steps.append((progress, name, step))
        self.steps.sort(key=lambda entry: entry[0])

    def _steps(self, everything: bool = False) -> None:
        while self.steps and (everything or self.progress >= self.steps[0][0]):
            _, name, step = self.steps.pop(0)
            step(self)
            self.tally[f"step_{name}"] += 1

    # -- the history ------------------------------------------------------------

    def run(self, mutations: int, late: list[Cal], step_pause: float = 0.05,
            fault_rate: float = 0.22, faults_until: float = 0.8) -> None:
        """Mutate and inject faults until `mutations` writes are done.

        `late` calendars are subscribed during the history (the first right after
        a failing watch is injected); one subscription is paused at 35% and resumed
        (after another failing watch) at 55%; one calendar is subscribed again at 70%.
        Faults are injected until `faults_until` of the history: the rest gives the
        last ones time to act (each must be shown to have acted).
        """
        plan = {round(mutations * (0.15 + 0.5 * i / max(len(late), 1))): cal
                for i, cal in enumerate(late)}
        pause_at, resume_at, again_at = (round(mutations * f) for f in (0.35, 0.55, 0.7))
        kinds = self.fault_kinds()
        # Every kind at least once (rate limits while they are still allowed), then random.
        early = [k for k in kinds if k in EARLY_ONLY]
        rest = [k for k in kinds if k not in EARLY_ONLY]
        self.rng.shuffle(early)
        self.rng.shuffle(rest)
        unused = early + rest
        while self.mutations < mutations:
            self.progress = self.mutations / mutations
            self._due()
            self._steps()
            if self.mutations in plan:
                cal = plan.pop(self.mutations)
                if not self.tally["subscribe_after_watch_fault"]:
                    self.watch_fail(count=1)
                    self.tally["subscribe_after_watch_fault"] += 1
                self.subscribe(cal)
            if self.mutations == pause_at and self._paused is None:
                waiting = [m for m in sorted(plan) if m > self.mutations]
                if self.pause_during_watch is not None and waiting:
                    if not self.pause_during_watch(self, plan.pop(waiting[-1])):
                        self.pause()
                else:
                    self.pause()
            if self.mutations == resume_at and self._paused is not None:
                self.watch_fail(count=1)
                self.resume()
            if self.mutations == again_at:
                self.subscribe_again()
            if self.progress < faults_until and self.rng.random() < fault_rate:
                eligible = [k for k in kinds if self.progress < 0.3 or k not in EARLY_ONLY]
                fresh = [k for k in unused if k in eligible]
                kind = fresh[0] if fresh else self.rng.choice(eligible)
                if kind in unused:
                    unused.remove(kind)
                self.fault(kind)
            self.mutate(self.rng.choice(self.cals))
            time.sleep(self.rng.uniform(0, step_pause))
        if self._paused is not None:
            self.resume()
        self._steps(everything=True)

    def took_effect(self, kind: str, count: int = 1) -> None:
        """Evidence, recorded where the fault acted, that `kind` changed something."""
        self.taken[kind] += count

    def unproven(self) -> list[str]:
        """Fault kinds injected without evidence that they acted."""
        return [k for k in self.all_kinds() if self.tally[f"fault_{k}"] and not self.taken[k]]

    def inject(self, kind: str, method: str, status: int, reason: str, count: int = 1) -> None:
        self.control.inject_failure(method, status, reason, count=count)
        # The method's call count read after the failure is queued: a call in between
        # counts as before it (it may have taken ours: then ours is under-counted).
        calls = int(self.control.counters().get("calls", {}).get(method, 0))
        self._injected.append((kind, method, count, calls))

    def settle_evidence(self) -> None:
        """Before faults are lifted: which injected Calendar failures were answered.

        The emulator answers a method's failures in the order they were queued, one
        per call of the method while any is queued, and counts each call before it
        checks them. So at most `left` failures were still queued when one was
        injected: those queued before it, less one per call counted since the
        previous injection (never below zero), plus its own; once the method was
        called at least `left` times after it, it was answered. An upper bound on
        what was queued (calls that might have taken ours count as before it), so
        the evidence is never over-counted. Calls refused before the failure check
        (authentication, quotas) would break that: these histories inject neither.
        """
        calls = self.control.counters().get("calls", {})
        left: Counter[str] = Counter()
        seen: dict[str, int] = {}
        answered: Counter[str] = Counter()
        for kind, method, count, calls_then in self._injected:
            taken = calls_then - seen.get(method, calls_then)
            left[method] = max(left[method] - taken, 0) + count
            seen[method] = calls_then
            if int(calls.get(method, 0)) - calls_then >= left[method]:
                answered[kind] += 1
        for kind, count in answered.items():  # idempotent: settled again while waiting
            self.taken[kind] = max(self.taken[kind], count)

    def unanswered(self) -> list[str]:
        """Kinds of injected Calendar failures none of which was shown answered yet."""
        return sorted({kind for kind, *_ in self._injected if not self.taken[kind]})

    def prove_rate_limits(self, sync_runs: list[dict[str, Any]]) -> None:
        """A rate limit acted if a run of its user was refused (`rate_limited`) while it
        was on (a few seconds of slack: the worker's clock may be skewed)."""
        owners = {c.sub_id: c.watched.owner for c in self.cals if c.sub_id}
        for owner, started, ended in self.rate_limits:
            for line in sync_runs:
                if line.get("outcome") != "rate_limited":
                    continue
                at = _epoch(str(line.get("time", "")))
                if (owners.get(str(line.get("subscription"))) == owner
                        and started - 5 <= at <= ended + 5):
                    self.took_effect("rate_limit")
                    break

    def quiet(self, settle_seconds: float = 0.0) -> None:
        """Lift every fault (timed ones at once), let the operator run once more each
        subscribe that said it failed, and wait for pushes in flight.

        Injected Calendar failures stay queued up to `settle_seconds` more, until
        each kind was answered at least once (a stop or a watch failure injected
        late waits for the next renewal), so that each is shown to have acted."""
        self._await_held()
        self._due(everything=True)
        deadline = time.monotonic() + settle_seconds
        self.settle_evidence()
        while self.unanswered() and time.monotonic() < deadline:
            time.sleep(0.5)
            self.settle_evidence()
        self.tally["quiet_unanswered_kinds"] += len(self.unanswered())
        self.control.clear_failures()
        self.control.set_rate_limit(None)
        self.control.clear_notification_faults()
        self.retry_failed_subscribes()
        self.control.flush_notifications(timeout=15)

    # -- lifecycle (as the CLI) ------------------------------------------------------

    def subscribe(self, cal: Cal, what: str = "subscribe") -> None:
        try:
            cal.sub_id = subscribe(self.service, cal.watched.calendar_id, cal.watched.owner)
            self.tally[what] += 1
        except Exception as err:  # noqa: BLE001 - the CLI reports it; the test records it
            self.tally[f"{what}_raised_{type(err).__name__}"] += 1
            self._failed.append(cal)

    def retry_failed_subscribes(self) -> None:
        """The operator runs a subscribe that said it failed once more."""
        failed, self._failed = self._failed, []
        for cal in failed:
            self.subscribe(cal, "subscribe_retried")

    def subscribe_again(self) -> None:
        done = [c for c in self.cals if c.sub_id]
        if not done:
            return
        cal = self.rng.choice(done)
        try:
            again = subscribe(self.service, cal.watched.calendar_id, cal.watched.owner)
            self.tally["subscribe_again" + ("_same" if again == cal.sub_id else "_new_id")] += 1
        except Exception as err:  # noqa: BLE001
            self.tally[f"subscribe_again_raised_{type(err).__name__}"] += 1

    def pause(self) -> None:
        done = [c for c in self.cals if c.sub_id]
        if not done:
            return
        cal = self.rng.choice(done)
        self._paused = cal  # whatever pause answers, the operator resumes it later
        try:
            self.service.pause(cal.sub_id)
            self.tally["pause"] += 1
        except Exception as err:  # noqa: BLE001
            self.tally[f"pause_raised_{type(err).__name__}"] += 1

    def resume(self) -> None:
        cal, self._paused = self._paused, None
        if cal is None:
            return
        try:
            self.service.resume(cal.sub_id)
            self.tally["resume"] += 1
        except Exception as err:  # noqa: BLE001
            self.tally[f"resume_raised_{type(err).__name__}"] += 1

    # -- calendar writes ------------------------------------------------------------

    def mutate(self, cal: Cal) -> None:
        events = cal.watched.api.events()
        calendar_id = cal.watched.calendar_id
        roll = self.rng.random()
        n = self.mutations
        if not cal.events or roll < 0.45:
            body = event_body(self.rng, f"chaos {n}")
            created = self._write(lambda: events.insert(calendarId=calendar_id,
                                                        body=body).execute())
            cal.events.append(created["id"])
            kind = "insert"
        elif roll < 0.8:
            event_id = self.rng.choice(cal.events)
            field_name = self.rng.choice(["summary", "location", "description"])
            body = {field_name: f"{field_name} {n}"}
            self._write(lambda: events.patch(calendarId=calendar_id, eventId=event_id,
                                             body=body).execute())
            kind = "patch"
        else:
            event_id = cal.events.pop(self.rng.randrange(len(cal.events)))
            self._write(lambda: events.delete(calendarId=calendar_id,
                                              eventId=event_id).execute())
            kind = "delete"
        self.mutations += 1
        self.tally[f"mutation_{kind}"] += 1

    def _write(self, call: Callable[[], Any]) -> Any:
        for attempt in range(60):
            try:
                return call()
            except HttpError as err:
                if err.status_code not in RETRIED_WRITE_STATUSES or attempt == 59:
                    raise
                self.tally["write_retried"] += 1
                time.sleep(0.1 + 0.05 * attempt)
        raise AssertionError("unreachable")

    # -- faults -----------------------------------------------------------------------

    def all_kinds(self) -> list[str]:
        """Every fault kind of this history: drawn at random, or scripted."""
        return [*self.fault_kinds(), *self.scripted_kinds]

    def fault_kinds(self) -> list[str]:
        return ["list_5xx", "list_429", "list_403_rate", "rate_limit", "list_410",
                "watch_fail", "stop_fail", "push_drop", "push_dup", "push_delay",
                *self.extra]

    def fault(self, kind: str) -> None:
        rng, control = self.rng, self.control
        self.tally[f"fault_{kind}"] += 1
        if kind in self.extra:
            self.extra[kind](self)
        elif kind == "list_5xx":
            self.inject(kind, "events.list", rng.choice([500, 503]), "backendError",
                         count=rng.randint(1, 3))
        elif kind == "list_429":
            self.inject(kind, "events.list", 429, "rateLimitExceeded", count=2)
        elif kind == "list_403_rate":
            self.inject(kind, "events.list", 403, "userRateLimitExceeded", count=2)
        elif kind == "rate_limit":
            # Every call of one user refused for a moment (a user's quota exhausted):
            # a user with a subscription of the history's, and a run of it then (as a
            # notification from another writer would ask), so a refused run shows it:
            # this user's own writes wait for the limit to be lifted.
            subscribed = [c for c in self.cals if c.sub_id]
            cal = rng.choice(subscribed or self.cals)
            owner = cal.watched.owner
            control.set_rate_limit(0, window_seconds=1.0, status=rng.choice([403, 429]),
                                   user=owner)
            started = time.time()
            if cal.sub_id:
                try:
                    self.service.request_sync(cal.sub_id)
                except Exception as err:  # noqa: BLE001 - evidence only: recorded
                    self.tally[f"rate_limit_request_raised_{type(err).__name__}"] += 1

            def lift() -> None:
                control.set_rate_limit(None)
                self.rate_limits.append((owner, started, time.time()))
                self.tally["undo_rate_limit"] += 1

            # Lifted on a timer, not between steps: a step may be a write of that
            # user, retried until the limit is lifted.
            timer = threading.Timer(rng.uniform(2.0, 3.0), lift)
            timer.daemon = True
            timer.start()
        elif kind == "list_410":
            cal = rng.choice(self.cals)
            if rng.random() < 0.5:
                control.invalidate_sync_tokens(cal.watched.calendar_id)
                self.tally["list_410_tokens_invalidated"] += 1
            self.inject(kind, "events.list", 410, "fullSyncRequired")
        elif kind == "watch_fail":
            self.watch_fail(rng.randint(1, 2))
        elif kind == "stop_fail":
            self.inject(kind, "channels.stop", 503, "backendError")
        elif kind in ("push_drop", "push_dup", "push_delay"):
            self._push_fault(kind)
        else:
            raise AssertionError(f"unknown fault {kind}")

    def _push_fault(self, kind: str) -> None:
        rng, control = self.rng, self.control
        marks = dict(control.counters().get("notifications", {}))
        outcome = {"push_drop": "dropped", "push_dup": "duplicated",
                   "push_delay": "delivered"}[kind]
        if kind == "push_drop":
            control.set_notification_faults(drop=rng.randint(1, 5))
        elif kind == "push_dup":
            control.set_notification_faults(duplicate=rng.randint(1, 5))
        else:
            control.set_notification_faults(delay=rng.uniform(0.5, 2.0))

        def lift() -> None:
            # Counted by the emulator: pushes dropped, duplicated, or sent late.
            now = control.counters().get("notifications", {})
            self.took_effect(kind, max(int(now.get(outcome, 0)) - int(marks.get(outcome, 0)),
                                       0))
            control.clear_notification_faults()

        self.later(3.0, kind, lift)

    def watch_fail(self, count: int, kind: str = "watch_fail") -> None:
        status = self.rng.choice([500, 503, 429])
        reason = "rateLimitExceeded" if status == 429 else "backendError"
        self.inject(kind, "events.watch", status, reason, count=count)
        self.tally[f"watch_fail_{status}"] += 1
