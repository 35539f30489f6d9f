"""The consumer API's read routes: a changes page and an events page of 1,000 over HTTP.

    .venv/bin/python bench/api.py [--entries 1000] [--rounds 15] [--smoke] [--stack-env PATH]

Seeds one subscription with N snapshots and N feed entries (the store's layout,
`codec.encode_snapshot`), then, in the same run, alternates:

- `GET /v1/subscriptions/{id}/changes?cursor=0&limit=N` through the `api` function
  (functions-framework, over HTTP), and the raw Firestore query of the same entries
  (`seq > 0` ordered by `seq`, limit N) from this process;
- `GET .../events?limit=N` (the first page: a read-only transaction with
  `change_seq`), and the raw query of the same snapshots (`_deleted == false`
  ordered by id, limit N).

Prints p50/p95 latency of each, the ratio of throughputs (API / raw query; target
>= 0.7x), and the Firestore documents read per API request, counted at the
Firestore client running the same handler in process (target: documents returned
+ O(1)). Without `--stack-env` it starts a Firestore emulator and the `api`
function of its own; with it, it uses the stack's (under a subscription id of its
own, deleted again at the end). `--smoke`: tiny sizes, a few seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from functions.adapters.firestore import codec  # noqa: E402
from functions.adapters.firestore.store import seq_id  # noqa: E402

PROJECT = "calsync-bench"
TARGET_RATIO = 0.7


@contextlib.contextmanager
def _api_stack(stack_env: Path | None) -> Iterator[dict[str, str]]:
    """The Firestore emulator and the `api` function: the stack's, or our own."""
    if stack_env is not None:
        from _stack import read_stack_env

        yield read_stack_env(stack_env)
        return
    from infra.local import components
    from infra.local.processes import free_port

    with tempfile.TemporaryDirectory(prefix="calsync-bench-api-") as tmp:
        run_dir = Path(tmp)
        started: list[Any] = []
        try:
            port = free_port()
            started.append(components.start_firestore(port, run_dir))
            env = {"GOOGLE_CLOUD_PROJECT": PROJECT,
                   "FIRESTORE_EMULATOR_HOST": f"{components.HOST}:{port}",
                   "CALSYNC_REGION": "local", "CALSYNC_TASKS_QUEUE": "unused",
                   "CALSYNC_WORKER_URL": "http://127.0.0.1:9/", "CALSYNC_JSON_LOGS": "true"}
            api_port = free_port()
            started.append(components.start_function(
                "api", api_port, run_dir, env, components.ROOT / "main.py"))
            yield {**env, "CALSYNC_API_URL": f"http://{components.HOST}:{api_port}/"}
        finally:
            for process in reversed(started):
                process.stop()


def _event(n: int) -> dict[str, Any]:
    day = 1 + n % 28
    return {
        "kind": "calendar#event", "id": f"ev{n:06d}", "etag": f'"{n}"', "status": "confirmed",
        "summary": f"Meeting {n} about the quarterly plan", "description": "x" * 300,
        "location": "Room 4", "creator": {"email": "a@example.com"},
        "organizer": {"email": "a@example.com"},
        "start": {"dateTime": f"2026-12-{day:02d}T09:00:00Z"},
        "end": {"dateTime": f"2026-12-{day:02d}T10:00:00Z"},
        "attendees": [{"email": f"p{i}@example.com", "responseStatus": "accepted"}
                      for i in range(3)],
        "updated": "2026-11-30T10:00:00.000Z", "sequence": 0,
    }


def seed(client: Any, sub_id: str, count: int) -> None:
    now = datetime.now(UTC)
    sub = client.collection("subscriptions").document(sub_id)
    sub.set({"calendar_id": "bench@example.com", "owner": "bench@example.com",
             "credentials_ref": "dwd", "status": "active", "created_at": now, "labels": {}})
    batch, pending = client.batch(), 0
    for n in range(1, count + 1):
        resource = _event(n)
        snapshot = {**resource, "_deleted": False, "_seq": n, "_synced_at": now}
        batch.set(sub.collection("events").document(resource["id"]),
                  codec.encode_snapshot(snapshot))
        batch.set(sub.collection("changes").document(seq_id(n)), {
            "seq": n, "kind": "created", "event_id": resource["id"], "recurring_event_id": None,
            "fields": codec.escape({k: {"before": None, "after": v}
                                    for k, v in resource.items()}),
            "etag": resource["etag"], "at": now, "expire_at": now + timedelta(days=30)})
        pending += 2
        if pending >= 400:
            batch.commit()
            batch, pending = client.batch(), 0
    batch.set(sub.collection("state").document("writer"), {"change_seq": count})
    batch.commit()


class ReadCount:
    """Documents read through a Firestore client (queries bill at least one)."""

    def __init__(self, client: Any) -> None:
        self.reads = 0
        api = client._firestore_api
        outer = self

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(api, name)

            def run_query(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
                seen = 0
                for response in api.run_query(*args, **kwargs):
                    if "document" in response:
                        seen += 1
                    yield response
                outer.reads += max(seen, 1)

            def batch_get_documents(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
                for response in api.batch_get_documents(*args, **kwargs):
                    if "found" in response or "missing" in response:
                        outer.reads += 1
                    yield response

        client._firestore_api_internal = Counting()


def reads_per_request(env: dict[str, str], sub_id: str, count: int) -> dict[str, tuple[int, int]]:
    """(documents read, items returned) per route, the handler run in process."""
    from google.cloud import firestore

    from functions.adapters.firestore.feed import FirestoreFeedStore
    from functions.api.feed import ChangesQuery, Feed
    from functions.api.tokens import PageTokens

    client = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"])
    counter = ReadCount(client)
    feed = Feed(FirestoreFeedStore(client), PageTokens([b"bench"]))
    figures = {}
    counter.reads = 0
    changes = feed.changes(sub_id, ChangesQuery(cursor=0, limit=count))
    figures["changes"] = (counter.reads, len(changes.changes))
    counter.reads = 0
    events = feed.events(sub_id, None, count, False)
    figures["events"] = (counter.reads, len(events.events))
    client.close()
    return figures


class Api:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                                     timeout=120)

    def get(self, path: str) -> tuple[int, int]:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        return response.status, len(body)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    from _stack import add_bench_args, parse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1000, help="page size (max 1000)")
    parser.add_argument("--rounds", type=int, default=15)
    add_bench_args(parser)  # --smoke, --stack-env PATH
    args = parse(parser, argv)  # SIGTERM unwinds: what we started is stopped
    count, rounds = (20, 3) if args.smoke else (min(args.entries, 1000), args.rounds)

    with _api_stack(args.stack_env) as env:
        import os

        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
        client = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"])
        sub_id = f"bench-api-{uuid.uuid4().hex[:10]}"
        sub = client.collection("subscriptions").document(sub_id)
        try:
            started = time.perf_counter()
            seed(client, sub_id, count)
            print(f"seeded {count} snapshots and {count} entries in "
                  f"{time.perf_counter() - started:.1f}s")
            reads = reads_per_request(env, sub_id, count)
            api = Api(env["CALSYNC_API_URL"])
            base = f"/v1/subscriptions/{sub_id}"
            paths = {"changes": f"{base}/changes?cursor=0&limit={count}",
                     "events": f"{base}/events?limit={count}"}
            raw_queries = {
                "changes": sub.collection("changes").where(filter=FieldFilter("seq", ">", 0))
                .order_by("seq").limit(count),
                "events": sub.collection("events").where(filter=FieldFilter("_deleted", "==",
                                                                            False))
                .order_by("__name__").limit(count),
            }
            timings: dict[str, list[float]] = {f"{k} {w}": [] for k in paths
                                               for w in ("api", "raw")}
            for _ in range(2):  # warm up both sides
                for kind in paths:
                    api.get(paths[kind])
                    [d.to_dict() for d in raw_queries[kind].stream()]
            for _ in range(rounds):
                for kind in paths:
                    started = time.perf_counter()
                    status, size = api.get(paths[kind])
                    timings[f"{kind} api"].append(time.perf_counter() - started)
                    if status != 200:
                        print(f"{kind}: HTTP {status}", file=sys.stderr)
                        return 1
                    started = time.perf_counter()
                    docs = [d.to_dict() for d in raw_queries[kind].stream()]
                    timings[f"{kind} raw"].append(time.perf_counter() - started)
                    assert len(docs) == count
            print(f"\npage of {count}, {rounds} rounds, alternating API and raw query")
            print(f"{'what':<14}{'p50 ms':>9}{'p95 ms':>9}{'req/s':>8}")
            for name, values in timings.items():
                print(f"{name:<14}{percentile(values, 0.5) * 1000:>9.1f}"
                      f"{percentile(values, 0.95) * 1000:>9.1f}"
                      f"{1 / statistics.mean(values):>8.2f}")
            print()
            for kind in paths:
                ratio = statistics.mean(timings[f"{kind} raw"]) / statistics.mean(
                    timings[f"{kind} api"])
                read, returned = reads[kind]
                verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
                print(f"{kind}: API throughput {ratio:.2f}x the raw query ({verdict} the "
                      f"{TARGET_RATIO}x target); {read} documents read for {returned} "
                      f"returned (+{read - returned})")
        finally:
            client.recursive_delete(sub)
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
