"""Webhook acknowledgement throughput and latency, beside a minimal Firestore-lookup handler.

    .venv/bin/python bench/webhook.py [--threads 12] [--seconds 6] [--rounds 2] [--smoke]

`--smoke` shrinks every phase (few threads, one short round, a short paced
run) so the whole bench finishes quickly: it proves the bench still runs, its
figures mean little.

Starts the whole local stack (Firestore, Cloud Tasks and Calendar emulators, the
three functions under functions-framework) in a temporary run directory,
subscribes one calendar in-process, and drives the real `webhook` function with
valid notifications for its channel (signed token, matching resource id,
`exists`, increasing message numbers) from N keep-alive client threads.

Beside it, in the same run and under the same server kind (functions-framework,
same gunicorn defaults) against the same Firestore emulator, a baseline function
that only reads `channels/{X-Goog-Channel-ID}` and answers 200. Rounds alternate
webhook / baseline so drift on a shared machine hits both; the ratio of the
summed throughputs is printed (target >= 0.5x the baseline).

Then a paced sender holds 200 notifications/s for ~10 s against each and prints
p50/p99, both from the moment each request was sent (service time) and from its
scheduled slot (includes any queueing in the sender, so a stalled server cannot
hide behind fewer sends). Every 5xx answer and transport error is counted.

Forged traffic: the same closed loop with a wrong token for the real channel
id (every answer must be 403), and the Firestore reads per request of valid
and forged notifications, counted at the Firestore client's RPC layer around
an in-process webhook service built like the deployed one, on the same
emulator (a forged notification must cost 0 reads: the token is verified
before anything is read).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from functions import app  # noqa: E402
from functions.intake import channel_tokens
from infra.calendar_emulator.control import EmulatorControl  # noqa: E402
from infra.local import components  # noqa: E402
from infra.local.processes import free_port  # noqa: E402
from infra.local.stack import Stack, StackConfig  # noqa: E402

PROJECT = "calsync-bench"
USER = "bench-webhook@example.com"
PACED_RATE = 200.0
PACED_SECONDS = 10.0
SMOKE_PACED_RATE = 50.0
SMOKE_PACED_SECONDS = 1.0
READ_RPCS = ("get_document", "batch_get_documents", "run_query", "list_documents",
             "run_aggregation_query", "partition_query")
FORGED_TOKEN = "v1.k0.forged-token-of-the-right-shape"
REQUEST_TIMEOUT = 30.0

BASELINE_SOURCE = '''\
"""Bench baseline: the least a notification handler can do -- one channel lookup."""
import os
import threading

import functions_framework
from flask import Response
from google.cloud import firestore

_lock = threading.Lock()
_client = None


def _db():
    global _client
    with _lock:
        if _client is None:
            _client = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
        return _client


@functions_framework.http
def baseline(request):
    channel_id = request.headers.get("X-Goog-Channel-ID")
    if not channel_id:
        return Response("missing channel id\\n", status=400, mimetype="text/plain")
    snapshot = _db().collection("channels").document(channel_id).get()
    if not snapshot.exists:
        return Response("unknown channel\\n", status=200, mimetype="text/plain")
    return Response("ok\\n", status=200, mimetype="text/plain")
'''


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, send -> full answer
    behind: list[float] = field(default_factory=list)  # seconds, scheduled slot -> answer
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0
    late_sends: int = 0
    last_sent: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def merge(self, other: Result) -> None:
        self.latencies += other.latencies
        self.behind += other.behind
        for status, n in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.late_sends += other.late_sends


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Sender:
    """One keep-alive connection; reconnects after a transport error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, headers: dict[str, str]) -> int | None:
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=REQUEST_TIMEOUT)
            self.conn.request("POST", "/", body=b"", headers=headers)
            response = self.conn.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status
        except (OSError, http.client.HTTPException):
            self.close()
            return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Target:
    def __init__(self, name: str, port: int, base_headers: dict[str, str],
                 numbers: itertools.count[int]) -> None:
        self.name = name
        self.port = port
        self.base = base_headers
        self.numbers = numbers

    def headers(self) -> dict[str, str]:
        return {**self.base, "X-Goog-Message-Number": str(next(self.numbers)),
                "Content-Length": "0"}


def closed_loop(target: Target, threads: int, seconds: float) -> Result:
    """`threads` clients, each sending back to back for `seconds` (hard cap on count too)."""
    results = [Result() for _ in range(threads)]
    start_gate = threading.Barrier(threads + 1, timeout=60)
    cap = int(seconds * 5000)  # per thread: a bound on the loop, never reached in practice

    def client(result: Result) -> None:
        sender = Sender(target.port)
        sender.post(target.headers())  # open the connection before the clock starts
        start_gate.wait()
        deadline = time.perf_counter() + seconds
        for _ in range(cap):
            sent = time.perf_counter()
            if sent >= deadline:
                break
            status = sender.post(target.headers())
            done = time.perf_counter()
            if status is None:
                result.errors += 1
                continue
            result.latencies.append(done - sent)
            result.statuses[status] = result.statuses.get(status, 0) + 1
        sender.close()

    workers = [threading.Thread(target=client, args=(r,), daemon=True) for r in results]
    for worker in workers:
        worker.start()
    start_gate.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join(seconds + REQUEST_TIMEOUT + 5)
    total = Result(elapsed=time.perf_counter() - started)
    for result in results:
        elapsed = total.elapsed
        total.merge(result)
        total.elapsed = elapsed
    return total


def paced(target: Target, rate: float, seconds: float, threads: int = 16) -> Result:
    """Open loop: request i is due at t0 + i/rate, whoever is free sends it."""
    total_requests = int(rate * seconds)
    slots = iter(range(total_requests))
    slot_lock = threading.Lock()
    results = [Result() for _ in range(threads)]
    t0 = time.perf_counter() + 0.5

    def client(result: Result) -> None:
        sender = Sender(target.port)
        sender.post(target.headers())
        while True:
            with slot_lock:
                i = next(slots, None)
            if i is None:
                break
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.005:
                result.late_sends += 1
            sent = result.last_sent = time.perf_counter()
            status = sender.post(target.headers())
            done = time.perf_counter()
            if status is None:
                result.errors += 1
                continue
            result.latencies.append(done - sent)
            result.behind.append(done - due)
            result.statuses[status] = result.statuses.get(status, 0) + 1
        sender.close()

    workers = [threading.Thread(target=client, args=(r,), daemon=True) for r in results]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + REQUEST_TIMEOUT + 10)
    # Achieved send rate: over the span the sends took (a slow last answer is latency).
    last = max((r.last_sent for r in results), default=t0)
    total = Result(elapsed=max(last - t0, 0.0) + 1 / rate)
    for result in results:
        elapsed = total.elapsed
        total.merge(result)
        total.elapsed = elapsed
    return total


def ms(value: float) -> str:
    return f"{value * 1000:8.1f}"


def fmt_statuses(result: Result) -> str:
    return ",".join(f"{s}x{n}" for s, n in sorted(result.statuses.items())) or "-"


def wait_quiet(store: Any, sub_id: str, timeout: float = 60.0) -> bool:
    from datetime import UTC, datetime

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sub = store.get_subscription(sub_id)
        state = store.get_writer_state(sub_id)
        until = state.get("lease_until")
        held = until is not None and until > datetime.now(UTC)
        if sub and sub.requested_gen <= int(state.get("synced_gen") or 0) and not held:
            return True
        time.sleep(0.2)
    return False


class ReadCounter:
    """Counts Firestore read RPCs and the documents they return, from this process.

    A batch get answers one message per requested document (found or
    missing, both billed as reads); a query one per document, and at least
    one read is billed for a query that finds nothing.
    """

    def __init__(self) -> None:
        self.rpcs = 0
        self.documents = 0
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> ReadCounter:
        from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

        for name in READ_RPCS:
            original = getattr(FirestoreClient, name)
            self._saved[name] = original

            def counted(client: Any, *args: Any, _original: Any = original,
                        _stream: bool = name in ("batch_get_documents", "run_query"),
                        **kwargs: Any) -> Any:
                self.rpcs += 1
                answer = _original(client, *args, **kwargs)
                if not _stream:
                    self.documents += 1
                    return answer
                return self._counting(answer)

            setattr(FirestoreClient, name, counted)
        return self

    def _counting(self, stream: Any) -> Any:
        seen = 0
        for message in stream:
            if (getattr(message, "found", None) or getattr(message, "missing", None)
                    or getattr(message, "document", None)):
                seen += 1
            yield message
        self.documents += max(seen, 1)

    def __exit__(self, *exc: object) -> None:
        from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

        for name, original in self._saved.items():
            setattr(FirestoreClient, name, original)


def reads_per_request(headers: dict[str, str], numbers: itertools.count[int],
                      count: int) -> tuple[float, float, dict[int, int]]:
    """(read RPCs, documents read) per notification of an in-process webhook service
    wired as deployed (`app.webhook_service`), and the answers' statuses."""
    from functions.intake.webhook import parse_notification

    app._cache.pop("webhook", None)  # a fresh instance: its channel cache starts empty
    service = app.webhook_service()
    statuses: dict[int, int] = {}
    with ReadCounter() as reads:
        for _ in range(count):
            note = parse_notification("POST", {**headers,
                                               "X-Goog-Message-Number": str(next(numbers))})
            status = service.handle(note).status
            statuses[status] = statuses.get(status, 0) + 1
    app._cache.pop("webhook", None)
    return reads.rpcs / count, reads.documents / count, statuses


def delivering_channel(db: Any, sub_id: str, timeout: float = 60.0) -> tuple[str, str]:
    """(channel id, resource id) of the subscription's confirmed delivering channel."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for snap in db.collection("channels").where(
                filter=FieldFilter("sub_id", "==", sub_id)).stream():
            data = snap.to_dict() or {}
            if data.get("state") in ("pending", "active") and data.get("resource_id"):
                return snap.id, str(data["resource_id"])
        time.sleep(0.2)
    raise SystemExit(f"no delivering channel with a resource id within {timeout:.0f}s")


def notification_results(log: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if not log.exists():
        return counts
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"message":"notification"' in line:
            result = json.loads(line).get("result", "?")
            counts[result] = counts.get(result, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one short round: proves the bench runs")
    args = parser.parse_args()
    threads = max(1, min(args.threads, 64))
    seconds = max(1.0, min(args.seconds, 30.0))
    rounds = max(1, min(args.rounds, 5))
    paced_rate, paced_seconds, warmup, read_samples = PACED_RATE, PACED_SECONDS, 1.0, 200
    if args.smoke:
        threads, seconds, rounds = min(threads, 4), 1.0, 1
        paced_rate, paced_seconds, warmup, read_samples = (
            SMOKE_PACED_RATE, SMOKE_PACED_SECONDS, 0.3, 20)

    with tempfile.TemporaryDirectory(prefix="calsync-bench-webhook-") as tmp:
        run_dir = Path(tmp)
        stack = Stack(StackConfig(run_dir=run_dir, project=PROJECT))
        baseline_process = None
        saved_env = dict(os.environ)
        try:
            t_start = time.perf_counter()
            env = stack.start()
            print(f"local stack up in {time.perf_counter() - t_start:.1f}s "
                  f"(webhook {env['CALSYNC_WEBHOOK_URL']})", flush=True)
            source = run_dir / "baseline_main.py"
            source.write_text(BASELINE_SOURCE)
            baseline_port = free_port()
            baseline_process = components.start_function(
                "baseline", baseline_port, run_dir,
                {"GOOGLE_CLOUD_PROJECT": env["GOOGLE_CLOUD_PROJECT"],
                 "FIRESTORE_EMULATOR_HOST": env["FIRESTORE_EMULATOR_HOST"]},
                source, timeout=60)

            os.environ.update(env)
            app.reset()
            settings = app.cli_settings()
            service, store = app.subscription_service(settings), app.store(settings)
            control = EmulatorControl(env["CALENDAR_EMULATOR_CONTROL"].rsplit("/control", 1)[0])
            control.add_user(USER)
            calendar_id = control.create_calendar(USER, summary="bench webhook")["id"]
            control.bulk_insert_events(calendar_id, [
                {"summary": f"seed {n}", "start": {"dateTime": f"2031-01-{1 + n:02d}T09:00:00Z"},
                 "end": {"dateTime": f"2031-01-{1 + n:02d}T10:00:00Z"}} for n in range(5)])
            subscribed = service.subscribe(calendar_id, USER, "bearer")
            # SubscribeResult (.subscription) or the older (subscription, channel) pair.
            sub = getattr(subscribed, "subscription", None) or subscribed[0]
            channel_id, resource_id = delivering_channel(app.firestore_client(settings), sub.id)
            if not wait_quiet(store, sub.id):
                raise SystemExit("the initial sync did not finish within 60s")

            def settle() -> None:
                # Same starting state for every phase (not worth the wait in a smoke run).
                if not args.smoke:
                    wait_quiet(store, sub.id)

            numbers = itertools.count(1000)
            headers = {
                "X-Goog-Channel-ID": channel_id,
                "X-Goog-Channel-Token": channel_tokens.sign(channel_id,
                                                           settings.channel_token_keys),
                "X-Goog-Resource-ID": resource_id,
                "X-Goog-Resource-State": "exists",
                "X-Goog-Resource-URI": f"https://www.googleapis.com/calendar/v3/calendars/"
                                       f"{calendar_id}/events",
            }
            webhook_port = int(env["CALSYNC_WEBHOOK_URL"].rstrip("/").rsplit(":", 1)[1])
            webhook = Target("webhook", webhook_port, headers, numbers)
            baseline = Target("baseline", baseline_port, headers, numbers)
            forged_headers = {**headers, "X-Goog-Channel-Token": FORGED_TOKEN}
            forged = Target("forged", webhook_port, forged_headers, numbers)

            # Sanity: one valid notification each, and warm both servers up.
            probe = Sender(webhook_port)
            status = probe.post(webhook.headers())
            probe.close()
            if status != 200:
                raise SystemExit(f"a valid notification was answered {status}, not 200")
            for target in (webhook, baseline):
                closed_loop(target, threads, warmup)
            settle()
            hook_log = run_dir / "function-webhook.log"
            before = notification_results(hook_log)

            print(f"\nclosed loop: {threads} keep-alive client threads, {rounds} alternating "
                  f"rounds of {seconds:.0f}s each (2 cores shared with the stack)")
            print(f"{'round':>5} {'target':>9} {'requests':>9} {'notif/s':>8} "
                  f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'5xx':>5} {'errors':>6}  statuses")
            totals = {"webhook": Result(), "baseline": Result()}
            for round_ in range(1, rounds + 1):
                order = (webhook, baseline) if round_ % 2 else (baseline, webhook)
                for target in order:
                    result = closed_loop(target, threads, seconds)
                    totals[target.name].merge(result)
                    print(f"{round_:>5} {target.name:>9} {result.count:>9} {result.rate:>8.0f} "
                          f"{ms(pct(result.latencies, 50))} {ms(pct(result.latencies, 99))} "
                          f"{ms(max(result.latencies, default=0))} {result.server_errors:>5} "
                          f"{result.errors:>6}  {fmt_statuses(result)}", flush=True)
                    # Same starting state for every round: the sync runs the webhook
                    # triggered are over before the next round begins.
                    settle()
            for name, result in totals.items():
                print(f"{'total':>5} {name:>9} {result.count:>9} {result.rate:>8.0f} "
                      f"{ms(pct(result.latencies, 50))} {ms(pct(result.latencies, 99))} "
                      f"{ms(max(result.latencies, default=0))} {result.server_errors:>5} "
                      f"{result.errors:>6}  {fmt_statuses(result)}")
            ratio = totals["webhook"].rate / totals["baseline"].rate
            verdict = "meets" if ratio >= 0.5 else "BELOW"
            print(f"throughput ratio webhook/baseline: {ratio:.2f}x  "
                  f"({verdict} the >= 0.50x target)")
            p50s = [pct(totals[name].latencies, 50) for name in ("webhook", "baseline")]
            print(f"p50 latency ratio webhook/baseline: {p50s[0] / p50s[1]:.2f}x")

            print(f"\npaced: {paced_rate:.0f} notifications/s for {paced_seconds:.0f}s "
                  f"(open loop, 16 sender threads)")
            print(f"{'target':>9} {'sent':>6} {'achieved/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'max ms':>8} {'p99 from slot':>14} {'late':>5} {'5xx':>5} {'errors':>6}  "
                  f"statuses")
            paced_results = {}
            for target in (webhook, baseline):
                result = paced(target, paced_rate, paced_seconds)
                paced_results[target.name] = result
                print(f"{target.name:>9} {result.count:>6} {result.rate:>10.0f} "
                      f"{ms(pct(result.latencies, 50))} {ms(pct(result.latencies, 99))} "
                      f"{ms(max(result.latencies, default=0))} "
                      f"{pct(result.behind, 99) * 1000:>14.1f} {result.late_sends:>5} "
                      f"{result.server_errors:>5} {result.errors:>6}  {fmt_statuses(result)}",
                      flush=True)
                settle()

            print(f"\nforged traffic: wrong token for the real channel, {threads} threads, "
                  f"{seconds:.0f}s closed loop (every answer must be 403)")
            print(f"{'target':>9} {'requests':>9} {'notif/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'5xx':>5} {'errors':>6}  statuses")
            forged_result = closed_loop(forged, threads, seconds)
            print(f"{'forged':>9} {forged_result.count:>9} {forged_result.rate:>8.0f} "
                  f"{ms(pct(forged_result.latencies, 50))} "
                  f"{ms(pct(forged_result.latencies, 99))} {forged_result.server_errors:>5} "
                  f"{forged_result.errors:>6}  {fmt_statuses(forged_result)}", flush=True)
            settle()
            print(f"\nFirestore reads per notification (read RPCs counted around an "
                  f"in-process webhook service, {read_samples} notifications each):")
            read_rows = {}
            for name, row_headers in (("valid", headers), ("forged", forged_headers)):
                rpcs, docs, row_statuses = reads_per_request(row_headers, numbers, read_samples)
                read_rows[name] = docs
                print(f"{name:>9} {docs:>6.2f} documents read/request  {rpcs:>6.2f} read RPCs/"
                      "request  statuses "
                      + ",".join(f"{k}x{v}" for k, v in sorted(row_statuses.items())))
            settle()

            after = notification_results(hook_log)
            outcomes = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            five_xx = (sum(r.server_errors for r in totals.values())
                       + sum(r.server_errors for r in paced_results.values())
                       + forged_result.server_errors)
            errors = (sum(r.errors for r in totals.values())
                      + sum(r.errors for r in paced_results.values()) + forged_result.errors)
            print("\nwebhook outcomes logged during the measured runs: "
                  + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items()) if v))
            runs = sum(1 for line in (run_dir / "function-sync_worker.log").read_text(
                errors="replace").splitlines()
                if '"message":"sync run"' in line and sub.id in line)
            print(f"sync runs for the subscription over the whole bench: {runs}")
            for name in ("webhook", "baseline"):
                every = totals[name].latencies + paced_results[name].latencies
                slow = sum(1 for v in every if v > 1.0)
                print(f"{name} answers slower than 1 s: {slow} of {len(every)}")
            print(f"5xx answers in total: {five_xx}; transport errors: {errors}")
            problems = []
            if set(forged_result.statuses) - {403}:
                problems.append(f"forged notifications answered {fmt_statuses(forged_result)}")
            if read_rows["forged"] != 0:
                problems.append(f"forged notifications cost {read_rows['forged']:.2f} reads")
            if problems:
                raise SystemExit("FAILED: " + "; ".join(problems))
        finally:
            app.reset()
            os.environ.clear()
            os.environ.update(saved_env)
            if baseline_process is not None:
                baseline_process.stop()
            stack.stop()


if __name__ == "__main__":
    main()
