"""Where one notification's time goes: the webhook and the worker's run, step by step.

    .venv/bin/python bench/run_profile.py [--rounds 20] [--smoke] [--stack-env PATH]

The real webhook service and sync engine, in this process, over the real Firestore
adapters (Firestore emulator) and the real Calendar adapter (an in-process Calendar
emulator), one subscription with an open channel and three events. Each round writes
one event through the Calendar API, hands the webhook a signed notification for it,
then runs the worker's sync of that request. Every Firestore RPC (timed at the GAPIC
client, below every store), every Calendar call and every step of the run is timed;
the figures are medians over the rounds. The task queue records what it is asked to
queue (the Cloud Tasks emulator's share, its enqueue and its dispatch polling, is
measured by bench/end_to_end.py on the local stack). `--smoke`: 2 rounds.

Nothing here fails on a figure; it exits non-zero only when a round did not sync.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from _stack import add_bench_args, parse
from _world import USER, calendar_port, emulators, fail, seed, subscription

from functions.adapters.firestore.budget import FirestoreCallBudget
from functions.adapters.firestore.channels import FirestoreChannelStore
from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.adapters.google.channels import GoogleChannels
from functions.config import Settings
from functions.intake import channel_tokens
from functions.intake.webhook import Notification, WebhookService
from functions.lifecycle.subscriptions import SubscriptionService
from functions.sync.engine import SyncEngine, SyncSettings
from infra.calendar_emulator.testing import calendar_service

KEY = "k:" + "b" * 43 + "="


@dataclass
class Timeline:
    """Timed spans of the current round: (kind, name, start, seconds)."""

    spans: list[tuple[str, str, float, float]] = field(default_factory=list)

    def add(self, kind: str, name: str, start: float) -> None:
        self.spans.append((kind, name, start, time.perf_counter() - start))


class _TimedApi:
    """Delegates to the GAPIC Firestore client, timing each RPC (a stream until read)."""

    def __init__(self, api: Any, timeline: Timeline) -> None:
        self._api, self._timeline = api, timeline

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._api, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = attr(*args, **kwargs)
            if name in ("batch_get_documents", "run_query", "run_aggregation_query"):
                return self._drain(name, start, result)
            self._timeline.add("rpc", name, start)
            return result

        return timed

    def _drain(self, name: str, start: float, responses: Iterable[Any]) -> Iterator[Any]:
        try:
            yield from responses
        finally:
            self._timeline.add("rpc", name, start)


def _timed_method(owner: Any, name: str, timeline: Timeline, label: str) -> None:
    inner = getattr(owner, name, None)
    if inner is None:  # not in this version of the code (the bench runs on older trees)
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            timeline.add("step", label, start)

    setattr(owner, name, timed)


class RecordingQueue:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, int]] = []

    def enqueue_sync(self, sub_id: str, generation: int, not_before: datetime | None = None,
                     *, origin: str = "request") -> None:
        self.tasks.append((sub_id, generation))


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f}" if values else "      -"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=None, help="default 20 (smoke: 2)")
    add_bench_args(parser)
    args = parse(parser)
    rounds = max(1, min(args.rounds or (2 if args.smoke else 20), 500))
    timeline = Timeline()
    with emulators(args.stack_env) as (db, calendar):
        seed(calendar, 3)
        settings = Settings.from_env({
            "GOOGLE_CLOUD_PROJECT": "calsync-bench", "CALSYNC_REGION": "local",
            "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:1/",
            # Nothing listens there: the emulator's pushes fail; the bench hands the
            # webhook its notifications itself.
            "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:9/",
            "CALSYNC_CHANNEL_TOKEN_KEYS": KEY})
        store = FirestoreStore(db)
        queue = RecordingQueue()
        google = calendar_port(calendar)
        service = SubscriptionService(settings, SubscriptionStore(db), GoogleChannels(google),
                                      store, queue)  # type: ignore[arg-type]
        # The owners' call budget as the worker has it (app.sync_engine): each run takes
        # its CALSYNC_CALLS_PER_SYNC_TASK calls from its owner's share before it lists.
        # Rounds come every 50 ms, faster than an owner's budget allows (a share refills
        # at CALSYNC_USER_CALLS_PER_MINUTE / 60 / shards a second): a bucket large
        # enough that no round is deferred, the same reads and writes per take.
        budget = FirestoreCallBudget(db, 1_000_000, settings.user_budget_shards)
        engine = SyncEngine(store, google, queue,  # type: ignore[arg-type]
                            SyncSettings(min_sync_interval=0.01,
                                         calls_per_task=settings.calls_per_task),
                            channels=service, budget=budget)
        channels = FirestoreChannelStore(db)
        webhook = WebhookService(channels, store, queue,  # type: ignore[arg-type]
                                 settings.channel_token_keys,
                                 settings.notification_record_interval, 0.01)
        sub = subscription(store, "bench-profile")
        store.record_sync_request(sub.id, datetime.now().astimezone())
        first = engine.run(sub.id)
        if first.outcome.value == "continued":  # the watch was the task's one call
            time.sleep(0.05)
            first = engine.run(sub.id)  # what its follow-up task runs: the listing
        if first.outcome.value != "synced":
            fail(f"first sync: outcome {first.outcome.value}")
        open_ = [c for c in SubscriptionStore(db).delivering_channels(sub.id) if c.resource_id]
        if not open_:
            fail("the first run opened no channel")
        channel = open_[0]
        token = channel_tokens.sign(channel.id, settings.channel_token_keys)

        db._firestore_api_internal = _TimedApi(db._firestore_api, timeline)
        _timed_method(google, "list_page", timeline, "events.list")
        for name, label in (("acquire_lease", "lease"), ("load_snapshots", "snapshot read"),
                            ("commit_page", "page commit"), ("commit_final", "final commit"),
                            ("record_sync_request", "record request")):
            _timed_method(store, name, timeline, label)
        _timed_method(budget, "take", timeline, "call budget")
        _timed_method(service, "has_delivering", timeline, "channel check (beside lease)")
        _timed_method(service, "ensure_channel", timeline, "ensure channel")
        _timed_method(channels, "get_channel", timeline, "channel read")
        _timed_method(channels, "record_notification", timeline, "notification noted")

        api = calendar_service(calendar.base_url, USER)
        ids = [item["id"] for item in calendar.control.dump_events(USER)]
        per_round: list[dict[str, Any]] = []
        for n in range(rounds):
            time.sleep(0.05)  # past the engine's minimum interval
            if n % 2:
                api.events().patch(calendarId="primary", eventId=ids[n % len(ids)],
                                   body={"summary": f"profile {n}"}).execute()
            else:
                api.events().insert(calendarId="primary", body={
                    "summary": f"profile {n}", "start": {"dateTime": "2031-04-01T09:00:00Z"},
                    "end": {"dateTime": "2031-04-01T10:00:00Z"}}).execute()
            timeline.spans.clear()
            start = time.perf_counter()
            outcome = webhook.handle(Notification(channel.id, channel.resource_id or "",
                                                  "exists", 100 + n, token))
            hook = time.perf_counter() - start
            hook_spans = list(timeline.spans)
            timeline.spans.clear()
            start = time.perf_counter()
            ran = engine.run(sub.id)
            run = time.perf_counter() - start
            if ran.outcome.value != "synced" or outcome.status != 200:
                fail(f"round {n}: webhook {outcome.status} {outcome.result}, "
                     f"run {ran.outcome.value} {ran.error}")
            commits = [begun + seconds for kind, name, begun, seconds in timeline.spans
                       if kind == "step" and name == "page commit"]
            per_round.append({"hook": hook, "run": run, "hook_spans": hook_spans,
                              "run_spans": list(timeline.spans),
                              "to_feed": (max(commits) - start) if commits else None})

    def report(title: str, total: str, spans_key: str) -> None:
        totals = [r[total] for r in per_round]
        print(f"\n{title}: median {_ms(totals)} ms over {len(per_round)} rounds")
        steps: dict[str, list[float]] = {}
        rpcs: dict[str, list[float]] = {}
        rpc_count: dict[str, list[int]] = {}
        for r in per_round:
            seen: dict[str, float] = {}
            counts: dict[str, int] = {}
            for kind, name, _, seconds in r[spans_key]:
                if kind == "step":
                    seen[name] = seen.get(name, 0.0) + seconds
                else:
                    rpcs.setdefault(name, []).append(seconds)
                    counts[name] = counts.get(name, 0) + 1
            for name, seconds in seen.items():
                steps.setdefault(name, []).append(seconds)
            for name, count in counts.items():
                rpc_count.setdefault(name, []).append(count)
        print(f"  {'step':<22} {'ms (median)':>11}  {'in rounds':>9}")
        for name, values in steps.items():
            print(f"  {name:<22} {_ms(values):>11}  {len(values):>9}")
        print(f"  {'Firestore RPC':<22} {'ms (median)':>11}  {'per round':>9}")
        for name, values in sorted(rpcs.items()):
            per = statistics.median(rpc_count[name])
            print(f"  {name:<22} {_ms(values):>11}  {per:>9g}")
        round_trips = [sum(1 for kind, *_ in r[spans_key] if kind == "rpc") for r in per_round]
        print(f"  Firestore round trips per round: median {statistics.median(round_trips):g}")

    print(f"one notification -> one run, {rounds} rounds (Firestore emulator, "
          "in-process Calendar emulator, real adapters)")
    report("webhook (token, channel, request; the task queue only recorded)", "hook",
           "hook_spans")
    report("worker run (lease to final commit)", "run", "run_spans")
    to_feed = [r["to_feed"] for r in per_round if r["to_feed"] is not None]
    print(f"  run start -> its page commit done (the entry visible): median {_ms(to_feed)} ms")


if __name__ == "__main__":
    main()
