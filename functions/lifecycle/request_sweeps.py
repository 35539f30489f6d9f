"""The renewer's subscription sections (DESIGN.md, "Liveness"): the sweep of requests
left without a task, the safety net, and unsubscribes interrupted midway.

Each orders its rows by a field that says when the row is next due (`sweep_at`,
`safety_net_at`, `deleting_since`), set only while there is something to look
at, and moves a row it cannot finish to when it is next due: however many rows
are stuck, the rows behind them are reached.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from functions.lifecycle.scan import Pass, Section, Step
from functions.lifecycle.subscriptions import SubscriptionService, backoff
from functions.model import ACTIVE as SUB_ACTIVE
from functions.model import DELETING, Subscription

# Safety-net probes one run has in flight at once. A probe is a chain of nine round
# trips (eight to Firestore, a task create): about 90-230 ms in production (README,
# "Scale and cost"), so one after another a run of the full batch (1,080 at the
# default settings) took minutes, a tenth of the queue's pace or less; 32 at once keep
# pace with the queue's 108 a second up to about 295 ms a probe. Each probe claims its
# row with a conditioned update first, so probes at once are as safe as two runs.
NET_PROBES_IN_FLIGHT = 32


class RequestSweeps:
    def __init__(self, run: Pass, service: SubscriptionService,
                 net_batch: int | None = None, net_lead: timedelta = timedelta(0),
                 net_in_flight: int = 1) -> None:
        """`net_batch`: the safety net's rows probed (and a fifth of the rows read) per
        run; default the run's batch (the renewer sizes it: `renewer.safety_net_batch`).
        `net_lead`: how long before its interval ends a row is looked at, so that the
        run a probe queues (behind the other probes of its batch) fits in the bound.
        `net_in_flight`: probes made at once (the deployed renewer: NET_PROBES_IN_FLIGHT)."""
        self._run = run
        self._net_batch = net_batch
        self._net_in_flight = net_in_flight
        self._net_lead = net_lead
        self._subs = run.subs
        self._service = service
        self._settings = run.settings
        self._report = run.report
        self._sweep_after = timedelta(seconds=run.settings.sweep_after)
        # A chain is alive while its runs come at most the queue's longest backoff
        # apart (unset: the sweep age, so some overlap is possible).
        self._silence = timedelta(seconds=run.settings.task_max_backoff
                                  or run.settings.sweep_after)

    def sweep(self) -> Section:
        """Re-queue requests left without a task: a crash between commit and enqueue,
        a task that ran out of attempts. The sweep looks at a request `sweep_after`
        past its `sweep_at`, and moves it past whatever is still serving it (a run
        holding the lease, a rate limit's retry, a task chain whose runs are still
        coming), so one task chain at a time serves a stuck request."""
        return self._run.subscriptions("sweep_at", self._run.now - self._sweep_after,
                                       self._sweep_one)

    def _look_again(self, sub: Subscription, requested: int, at: datetime) -> Step:
        moved = self._subs.update_if(sub.id, {"requested_gen": requested},
                                     {"sweep_at": max(at, self._run.now) - self._sweep_after})
        return Step.MOVED if moved else Step.SKIPPED

    def _sweep_one(self, sub: Subscription, data: dict[str, Any]) -> Step:
        now = self._run.now
        requested = int(data.get("requested_gen") or 0)
        if sub.status != SUB_ACTIVE:  # resuming records a new request
            cleared = self._subs.update_if(sub.id, {"status": sub.status}, {"sweep_at": None})
            return Step.PROGRESS if cleared else Step.SKIPPED
        state = self._subs.writer_state(sub.id)
        if requested <= int(state.get("synced_gen") or 0):
            # Served: drop it from this query so the sweep stays proportional
            # to what is really pending (only if no new request came meanwhile).
            cleared = self._subs.clear_request_marker(sub.id, requested)
            return Step.PROGRESS if cleared else Step.SKIPPED
        lease_until = state.get("lease_until")
        if lease_until is not None and lease_until > now:
            return self._look_again(sub, requested, lease_until)  # its run follows up
        retry_at = data.get("retry_at")
        if retry_at is not None and retry_at > now:
            return self._look_again(sub, requested, retry_at)  # rate limited: queued for then
        last_run = state.get("lease_started_at")
        asked = data.get("requested_at")
        if (last_run is not None and (asked is None or last_run >= asked)
                and now - last_run < self._silence):
            # A run of this request started lately: its task is being retried
            # by the queue. No second chain.
            return self._look_again(sub, requested, last_run + self._silence)
        return self._requeue(sub, data, requested, last_run)

    def _requeue(self, sub: Subscription, data: dict[str, Any], requested: int,
                 last_run: datetime | None) -> Step:
        """Give a stranded request a new task chain, claimed first so that of two
        renewer runs one queues it, under a name no earlier sweep of the request
        used (`sweep<n>`: Cloud Tasks would refuse a reused name, and a refused
        re-queue is no task at all). The next look waits out the new chain's
        first runs, longer each time a chain never ran at all."""
        now = self._run.now
        marks = {name: data.get(name) for name in ("swept_gen", "sweeps", "sweep_level",
                                                   "swept_at")}
        same = marks["swept_gen"] == requested
        sweeps = int(marks["sweeps"] or 0) + 1 if same else 1
        chain_ran = last_run is not None and marks["swept_at"] is not None and (
            last_run >= marks["swept_at"])
        level = int(marks["sweep_level"] or 0) + 1 if same and not chain_ran else 1
        look = now + max(self._silence, backoff(level, self._sweep_after))
        if not self._subs.update_if(
                sub.id, {"requested_gen": requested, **marks},
                {"swept_gen": requested, "sweeps": sweeps, "sweep_level": level,
                 "swept_at": now, "sweep_at": look - self._sweep_after}):
            return Step.SKIPPED
        self._service.requeue(sub.id, requested, origin=f"sweep{sweeps}")
        self._report.swept += 1
        return Step.PROGRESS

    def safety_net(self) -> Section:
        """Sync subscriptions not synced within their probe interval (or never).

        Adaptive (DESIGN.md, "Staleness bound"): each subscription's interval
        (`net_interval`, seconds) starts at CALSYNC_SAFETY_NET_INTERVAL_SECONDS,
        doubles after a probe that found nothing notifications had not delivered,
        up to `Settings.safety_net_longest` (the published bound), and drops back
        to the shortest after a probe that found a missed change or while the
        channel is unhealthy (`_unhealthy`). A probe is judged when the row is next
        looked at, once a run after it completed (`_judged`).

        The sort key, `safety_net_at`, is when the row is next due less the
        shortest interval (the final commit sets it to the commit time, so a synced
        row comes up a shortest interval later and is moved to its own due time):
        a subscription whose request is still pending moves on an interval and
        never holds the head of the query: its request is the sweep's."""
        shortest = timedelta(seconds=self._settings.safety_net_interval)
        return self._run.subscriptions("safety_net_at",
                                       self._run.now + self._net_lead - shortest,
                                       self._net_one, batch=self._net_batch,
                                       in_flight=self._net_in_flight)

    def _net_one(self, sub: Subscription, data: dict[str, Any]) -> Step:
        now = self._run.now
        due_by = now + self._net_lead  # what the query took in: due up to the lead ahead
        settings = self._settings
        shortest = timedelta(seconds=settings.safety_net_interval)

        def covered(fields: dict[str, Any]) -> bool:
            return self._subs.update_if(sub.id, {"safety_net_at": data.get("safety_net_at")},
                                        fields)

        if sub.status != SUB_ACTIVE:  # resuming requests a sync (and sets it again)
            return Step.PROGRESS if covered({"safety_net_at": None}) else Step.SKIPPED
        adaptive = settings.safety_net_longest > settings.safety_net_interval
        marks: dict[str, Any] = {}
        seconds = settings.safety_net_interval
        if adaptive:
            marks, seconds = self._judged(sub, data)
            if self._unhealthy(data, now):
                seconds = settings.safety_net_interval
            if seconds != data.get("net_interval"):
                marks["net_interval"] = seconds
        interval = timedelta(seconds=seconds)
        last = max((t for t in (data.get("last_synced_at"), marks.get(
            "probe_at", data.get("probe_at"))) if t is not None), default=None)
        if "probe_at" in marks:
            # A probe judged now: the next is due an interval after it, whatever
            # synced since (its own run included), so one look serves both.
            last = data.get("probe_at")
        if last is not None and last > due_by - interval:
            # Covered within its interval: due an interval after that.
            moved = covered({**marks, "safety_net_at": last + interval - shortest})
            return Step.MOVED if moved else Step.SKIPPED
        if data.get("requested_at") is not None:
            # A request is recorded and not served: the sweep's. Look again later.
            return Step.MOVED if covered({**marks, "safety_net_at": now}) else Step.SKIPPED
        probe: dict[str, Any] = {"safety_net_at": now}
        if adaptive:
            # Adaptive: note where the feed stood, to judge the probe by (`_judged`),
            # and the look after it is due an interval from now (the final commit
            # leaves that in place while the probe is out).
            state = self._subs.writer_state(sub.id)
            probe.update(probe_at=now, probe_seq=int(state.get("change_seq") or 0),
                         safety_net_at=now + interval - shortest)
        if not covered({**marks, **probe}):
            return Step.SKIPPED  # another run covered it
        queued = self._service.request_sync(sub.id, origin="safety")
        self._run.tally("safety_net", int(queued))
        return Step.PROGRESS if queued else Step.MOVED

    def _judged(self, sub: Subscription, data: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The marks to write and the interval (seconds) after the last probe, judged
        once a run that started after it completed: it listed what the calendar held
        at the probe. It found a missed change if the feed grew since the probe with
        no notification since (a notification after the probe would have announced
        what grew); else nothing notifications had not delivered."""
        settings = self._settings
        seconds = min(max(int(data.get("net_interval") or 0), settings.safety_net_interval),
                      settings.safety_net_longest)
        probe_at, synced = data.get("probe_at"), data.get("last_synced_at")
        if probe_at is None or synced is None or synced < probe_at:
            return {}, seconds  # no probe, or not served yet (the sweep's)
        state = self._subs.writer_state(sub.id)
        notified = data.get("last_notification_at")
        grew = int(state.get("change_seq") or 0) > int(data.get("probe_seq") or 0)
        if grew and (notified is None or notified < probe_at):
            self._run.tally("net_found")
            seconds = settings.safety_net_interval
        else:
            seconds = min(seconds * 2, settings.safety_net_longest)
        return {"probe_at": None, "probe_seq": None}, seconds

    def _unhealthy(self, data: dict[str, Any], now: datetime) -> bool:
        """No channel known to deliver (never opened, or its renewals failed until it
        expired, or its renewal is overdue by half the renewal window): notifications
        cannot be counted on, so the shortest interval."""
        expires = data.get("channel_expiration")
        late = timedelta(seconds=self._settings.renewal_window) / 2
        return expires is None or expires <= now + late

    def resume_deletions(self) -> Section:
        """Finish unsubscribes that stopped midway (`deleting` for longer than the sweep
        age): nobody has to repeat the DELETE."""
        return self._run.subscriptions("deleting_since", self._run.now - self._sweep_after,
                                       self._resume_one)

    def _resume_one(self, sub: Subscription, data: dict[str, Any]) -> Step:
        if sub.status != DELETING:
            return Step.SKIPPED
        # Claim it: a second run (or a crash now) waits another sweep age.
        if not self._subs.update_if(sub.id, {"deleting_since": data.get("deleting_since")},
                                    {"deleting_since": self._run.now}):
            return Step.SKIPPED
        self._service.unsubscribe(sub.id)
        self._report.deletions_resumed += 1
        return Step.PROGRESS
