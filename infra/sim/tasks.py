"""A Cloud Tasks queue on the virtual clock, with the rules the emulator does not enforce.

- Named tasks: a sync task is named by the Cloud Tasks adapter's own `task_id`
  (subscription, origin, generation); creating a name seen within the last
  hour is refused (`AlreadyExists`), which the adapter treats as done.
- `schedule_time` (`not_before`).
- The queue's `max_dispatches_per_second` as a token bucket holding
  `max_burst_size` tokens (at least one). Cloud Tasks picks a queue's burst itself
  (at most 500); the sync queue is simulated at that largest burst, the one its
  rate sets aside (`functions.config.sync_dispatches_per_second`), the renewer's
  at its rate.
- The renewer's own tasks (a tick's continuation, one shard of a fan-out) go to
  the renewer's queue (`CloudTasksQueue.enqueue_renewal`, CALSYNC_RENEWER_QUEUE,
  which terraform always deploys): a second `SimTaskQueue` with that queue's
  rules (`QueueConfig.renewer_from_terraform`), their body the renewer's job.
- Retries of a failed attempt (any status but 2xx) with the queue's backoff:
  `min_backoff` doubling `max_doublings` times, then growing linearly, capped
  at `max_backoff`; a task ends after `max_attempts` attempts or
  `max_retry_duration` after its first.

The queue settings are terraform's (`terraform/tasks.tf` and the defaults of
`terraform/variables.tf`), read with python-hcl2, so the simulation runs the
queues that are deployed. Not modelled: `max_concurrent_dispatches` (a run takes
no virtual time here).
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from functions.adapters.google.tasks import task_id
from functions.config import QUEUE_BURST_LIMIT, sync_dispatches_per_second
from functions.ports import TaskQueue
from infra.sim.clock import EventLoop
from infra.sim.meter import Timeline

ROOT = Path(__file__).resolve().parents[2]
NAME_REUSE_SECONDS = 3600.0  # Cloud Tasks refuses a task name for about an hour
_EPSILON = 1e-9


@dataclass(frozen=True)
class QueueConfig:
    max_dispatches_per_second: float = 50.0
    max_attempts: int = 10
    min_backoff: float = 5.0
    max_backoff: float = 600.0
    max_doublings: int = 5
    max_retry_duration: float = 7200.0
    max_burst_size: float | None = None  # None: the rate

    @property
    def burst(self) -> float:
        return max(1.0, self.max_dispatches_per_second if self.max_burst_size is None
                   else self.max_burst_size)

    @classmethod
    def from_terraform(cls, variables: Path = ROOT / "terraform" / "variables.tf") -> QueueConfig:
        """The defaults of `queue_*` in terraform/variables.tf."""
        defaults = terraform_defaults(variables)
        return cls(
            # terraform/tasks.tf's local.sync_dispatches_per_second: the project's call
            # budget, in tasks (the settings' formula, held to tasks.tf by tfcheck).
            max_dispatches_per_second=float(sync_dispatches_per_second(
                int(defaults["project_calls_per_minute"]),
                int(defaults["renewals_per_minute"]), int(defaults["calls_per_sync_task"]))),
            max_attempts=int(defaults["queue_max_attempts"]),
            min_backoff=float(defaults["queue_min_backoff_seconds"]),
            max_backoff=float(defaults["queue_max_backoff_seconds"]),
            max_doublings=int(defaults["queue_max_doublings"]),
            max_retry_duration=float(defaults["queue_max_retry_duration_seconds"]),
            max_burst_size=float(QUEUE_BURST_LIMIT))

    @classmethod
    def renewer_from_terraform(cls, root: Path = ROOT / "terraform") -> QueueConfig:
        """`google_cloud_tasks_queue.renewer` in terraform/tasks.tf: its retry rules as
        written, its rate `var.renewal_shards` (the variable's default)."""
        import hcl2

        with (root / "tasks.tf").open() as handle:
            parsed = hcl2.load(handle)
        queue = next(body["renewer"] for entry in parsed.get("resource", [])
                     for kind, body in entry.items()
                     if kind == "google_cloud_tasks_queue" and "renewer" in body)
        retry, rate = queue["retry_config"][0], queue["rate_limits"][0]
        defaults = terraform_defaults(root / "variables.tf")
        dispatches = str(rate["max_dispatches_per_second"])
        if dispatches.startswith("${var."):
            dispatches = str(defaults[dispatches[len("${var."):-1]])

        def seconds(value: Any) -> float:
            return float(str(value).rstrip("s"))

        return cls(max_dispatches_per_second=float(dispatches),
                   max_attempts=int(retry["max_attempts"]),
                   min_backoff=seconds(retry["min_backoff"]),
                   max_backoff=seconds(retry["max_backoff"]),
                   max_doublings=int(retry.get("max_doublings", 16)),  # Cloud Tasks' default
                   max_retry_duration=seconds(retry["max_retry_duration"]))

    def scaled(self, share: float) -> QueueConfig:
        """The queue of a sample holding `share` of the calendars: the same rules, the
        rate and burst scaled down with it (a sample's tasks see the contention a full
        run would)."""
        burst = None if self.max_burst_size is None else self.max_burst_size * share
        return replace(self, max_dispatches_per_second=self.max_dispatches_per_second * share,
                       max_burst_size=burst)

    def backoff(self, retry: int) -> float:
        """Seconds before retry number `retry` (1 = the first retry)."""
        steps = retry - 1
        if steps <= self.max_doublings:
            wait = self.min_backoff * 2 ** steps
        else:
            top = self.min_backoff * 2 ** self.max_doublings
            wait = top + (steps - self.max_doublings) * top
        return min(wait, self.max_backoff)


def terraform_defaults(variables: Path) -> dict[str, Any]:
    """Every variable's default in one terraform file."""
    import hcl2

    with variables.open() as handle:
        parsed = hcl2.load(handle)
    found: dict[str, Any] = {}
    for entry in parsed.get("variable", []):
        for name, body in entry.items():
            found[name] = body.get("default")
    return found


@dataclass
class _Task:
    name: str
    kind: str  # "sync" | "renew"
    sub_id: str
    created: float
    first_attempt: float | None = None
    attempts: int = 0
    job: dict[str, Any] | None = None  # a renewer task's body

    def body(self) -> bytes:
        """What `CloudTasksQueue.build_task` (or `enqueue_renewal`) sends."""
        if self.kind == "renew":
            return json.dumps(self.job or {}, separators=(",", ":")).encode()
        return json.dumps({"subscription_id": self.sub_id}).encode()


class SimTaskQueue(TaskQueue):
    """A queue. `on_sync(body) -> status` and `on_renew(body) -> status` serve its tasks;
    with `renewer` set, renewer tasks go to that queue instead."""

    def __init__(self, loop: EventLoop, config: QueueConfig,
                 on_sync: Callable[[bytes], int], on_renew: Callable[[bytes], int],
                 renewer: SimTaskQueue | None = None) -> None:
        self.loop = loop
        self.config = config
        self.on_sync = on_sync
        self.on_renew = on_renew
        self.renewer = renewer
        self._ready: list[tuple[float, int, _Task]] = []
        self._seq = itertools.count()
        self._names: dict[str, float] = {}
        self._name_order: deque[tuple[float, str]] = deque()
        self._rate = max(config.max_dispatches_per_second, 1e-9)
        self._capacity = config.burst
        self._tokens = self._capacity
        self._refilled = 0.0
        self._pump_at: float | None = None
        self.counting = True
        self.created = Timeline()
        self.dispatches = Timeline()
        self.deduplicated = 0
        self.retried = 0
        self.abandoned = 0
        self.failed_attempts = 0
        self.max_depth = 0
        self.max_wait = 0.0  # the longest a due task waited for the rate limit

    # -- TaskQueue (what the services call) -----------------------------------------------

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        self._create(task_id(sub_id, origin, generation), "sync", sub_id, not_before)

    def enqueue_renewal(self, not_before: datetime | None = None, name: str | None = None,
                        body: dict[str, Any] | None = None) -> None:
        """A renewer task (`CloudTasksQueue.enqueue_renewal`): a continuation or a shard."""
        if self.renewer is not None:
            self.renewer.enqueue_renewal(not_before, name, body)
            return
        self._create(name or f"renew-anon-{next(self._seq)}", "renew", "", not_before,
                     job=body)

    def depth(self) -> int:
        return len(self._ready)

    # -- internals ---------------------------------------------------------------------------

    def _create(self, name: str, kind: str, sub_id: str, not_before: datetime | None,
                job: dict[str, Any] | None = None) -> None:
        now = self.loop.clock.t
        while self._name_order and self._name_order[0][0] <= now - NAME_REUSE_SECONDS:
            old_time, old_name = self._name_order.popleft()
            if self._names.get(old_name) == old_time:
                del self._names[old_name]
        if name in self._names:
            if self.counting:
                self.deduplicated += 1
            return  # AlreadyExists: the adapter returns quietly
        self._names[name] = now
        self._name_order.append((now, name))
        if self.counting:
            self.created.add(now)
        eta = now if not_before is None else max(now, self.loop.clock.at(not_before))
        self._push(eta, _Task(name, kind, sub_id, now, job=job))

    def _push(self, eta: float, task: _Task) -> None:
        heapq.heappush(self._ready, (eta, next(self._seq), task))
        self.max_depth = max(self.max_depth, len(self._ready))
        self._schedule(eta)

    def _schedule(self, when: float) -> None:
        when = max(when, self.loop.clock.t)
        if self._pump_at is not None and self._pump_at <= when:
            return
        self._pump_at = when
        self.loop.at(when, self._pump, when)

    def _pump(self, planned: float) -> None:
        if self._pump_at != planned:
            return  # superseded by an earlier pump
        self._pump_at = None
        now = self.loop.clock.t
        self._tokens = min(self._capacity, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        ready = self._ready
        while ready and ready[0][0] <= now and self._tokens >= 1.0 - _EPSILON:
            eta, _, task = heapq.heappop(ready)
            self._tokens -= 1.0
            self.max_wait = max(self.max_wait, now - eta)
            self._dispatch(task)
        if ready:
            eta = ready[0][0]
            if self._tokens < 1.0 - _EPSILON:
                # Never "now" again: a refill too small to register would spin.
                eta = max(eta, now + max((1.0 - self._tokens) / self._rate, 1e-3))
            self._schedule(eta)

    def _dispatch(self, task: _Task) -> None:
        now = self.loop.clock.t
        if self.counting:
            self.dispatches.add(now)
        if task.first_attempt is None:
            task.first_attempt = now
        task.attempts += 1
        status = (self.on_sync if task.kind == "sync" else self.on_renew)(task.body())
        if 200 <= status < 300:
            return
        self.failed_attempts += 1
        if (task.attempts >= self.config.max_attempts
                or now - task.first_attempt >= self.config.max_retry_duration):
            self.abandoned += 1
            return
        self.retried += 1
        self._push(now + self.config.backoff(task.attempts), task)
