"""The end-to-end bench's third yardstick: DESIGN.md's floor, its required steps and no more.

The issue's bare path (a notification -> one `events.list` -> one Firestore commit,
inside the notification's request) leaves out what DESIGN.md requires of any
implementation, calsync or another: the webhook validates the channel, records the
request with a write conditioned on what it read and makes sure a Cloud Task is queued
(it never calls the Calendar API); the worker, invoked by that task, takes a lease
(a fencing generation written conditioned on its read), lists with the stored sync
token, diffs the listed events against their stored snapshots and writes snapshots
and change entries fenced by the lease. The floor does exactly that, each step in
its cheapest form:

- webhook: the channel token compared in constant time (no read); one batch get of
  the channel, the subscription and its writer state (the subscription is known from
  the channel id here; calsync reads the channel and the request in two reads at
  once); a pending request already queued is answered with no write; otherwise one
  write conditioned on the subscription's update time raises `requested_gen` and
  `queued_gen` together; one Cloud Task on a queue of its own; 200.
- worker: one batch get of the subscription and the writer state; the lease written
  conditioned on that read (or created); `events.list` pages with the stored token;
  one batch get of the listed events' snapshots; one commit of the changed
  snapshots, their entries (`changes/{seq}`, dense) and the state (token, synced
  generation, lease released), conditioned on the lease write's update time.

Left out, as no DESIGN.md guarantee needs them on this path: the minimum interval
between runs (the bench spaces its writes past it), follow-up runs, call budgets,
the channel check, publishing, the request sweep's marks, retries beyond a lost race.
So the floor is a lower bound on what an implementation of the contract costs here,
not a service: calsync / floor is what calsync's own logic adds to it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

FLOOR_SOURCE = '''\
"""Bench DESIGN floor: webhook (validate, record, queue) -> task -> worker (lease, list,
diff, fenced commit), each step in its cheapest form."""
import datetime
import hmac
import json
import os
import threading
import time
import urllib.parse
import urllib.request

import functions_framework
from google.api_core import exceptions as gexc
from google.cloud import firestore

_lock = threading.Lock()
_clients = {}


def _db():
    with _lock:
        if "db" not in _clients:
            _clients["db"] = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
        return _clients["db"]


def _tasks():
    with _lock:
        if "tasks" not in _clients:
            import grpc
            from google.cloud import tasks_v2
            from google.cloud.tasks_v2.services.cloud_tasks.transports import (
                CloudTasksGrpcTransport)
            channel = grpc.insecure_channel(os.environ["CLOUD_TASKS_EMULATOR_HOST"])
            _clients["tasks"] = tasks_v2.CloudTasksClient(
                transport=CloudTasksGrpcTransport(channel=channel))
        return _clients["tasks"]


# Clients made at import, before the first notification (calsync's functions are
# warm by the time the bench measures: the subscription's first sync ran on them).
_db()
_tasks()


def _refs(db):
    root = db.collection(os.environ["FLOOR_COLLECTION"])
    return root.document("channel"), root.document("sub"), root.document("state")


@functions_framework.http
def floor_webhook(request):
    received = time.time()
    token = request.headers.get("X-Goog-Channel-Token", "")
    if not hmac.compare_digest(token.encode(), os.environ["FLOOR_TOKEN"].encode()):
        return ("bad channel token", 403)
    if request.headers.get("X-Goog-Resource-State") != "exists":
        return "ok"
    db = _db()
    channel_ref, sub_ref, state_ref = _refs(db)
    for _ in range(10):
        found = {s.reference.path: s for s in db.get_all([channel_ref, sub_ref, state_ref])}
        channel = found[channel_ref.path].to_dict() or {}
        if (channel.get("id") != request.headers.get("X-Goog-Channel-Id")
                or channel.get("resource_id") != request.headers.get("X-Goog-Resource-Id")):
            return ("unknown channel", 404)
        sub_snap = found[sub_ref.path]
        sub, state = sub_snap.to_dict() or {}, found[state_ref.path].to_dict() or {}
        requested = int(sub.get("requested_gen") or 0)
        if requested > int(state.get("claimed_gen") or 0) and \\
                int(sub.get("queued_gen") or 0) >= requested:
            return "pending"  # the run that claims it has not listed yet: no write
        generation = requested + 1
        try:
            sub_ref.update({"requested_gen": generation, "queued_gen": generation},
                           option=db.write_option(last_update_time=sub_snap.update_time))
        except gexc.FailedPrecondition:
            continue  # another notification won: look again
        _tasks().create_task(parent=os.environ["FLOOR_QUEUE"], task={
            "http_request": {"http_method": "POST", "url": os.environ["FLOOR_WORKER_URL"],
                             "headers": {"Content-Type": "application/json"},
                             "body": json.dumps({"generation": generation, "received_at": received,
                                                 "queued_at": time.time()}).encode()}})
        return "queued"
    return ("contended", 503)


def _list(token):
    items, page_token = [], None
    while True:
        params = {"maxResults": "2500", "showDeleted": "true"}
        if page_token:
            params["pageToken"] = page_token
        elif token:
            params["syncToken"] = token
        url = (os.environ["FLOOR_API_ENDPOINT"].rstrip("/") + "/calendars/"
               + urllib.parse.quote(os.environ["FLOOR_CALENDAR_ID"], safe="") + "/events?"
               + urllib.parse.urlencode(params))
        call = urllib.request.Request(
            url, headers={"Authorization": "Bearer " + os.environ["FLOOR_USER"]})
        with urllib.request.urlopen(call, timeout=30) as answer:
            page = json.load(answer)
        items += page.get("items", [])
        page_token = page.get("nextPageToken")
        if not page_token:
            return items, page.get("nextSyncToken")


@functions_framework.http
def floor_worker(request):
    began = time.time()
    task = request.get_json(silent=True) or {}
    queued_at = task.get("queued_at")
    db = _db()
    _, sub_ref, state_ref = _refs(db)
    now = datetime.datetime.now(datetime.timezone.utc)
    for _ in range(10):
        found = {s.reference.path: s for s in db.get_all([sub_ref, state_ref])}
        sub, state_snap = found[sub_ref.path].to_dict() or {}, found[state_ref.path]
        state = state_snap.to_dict() or {}
        requested = int(sub.get("requested_gen") or 0)
        if requested <= int(state.get("synced_gen") or 0) and state.get("sync_token"):
            return "idle"
        until = state.get("lease_until")
        if until is not None and until > now:
            return "busy"
        lease = {"lease_generation": int(state.get("lease_generation") or 0) + 1,
                 "claimed_gen": requested,
                 "lease_until": now + datetime.timedelta(seconds=60)}
        try:
            if state_snap.exists:
                fence = state_ref.update(lease, option=db.write_option(
                    last_update_time=state_snap.update_time)).update_time
            else:
                fence = state_ref.create(lease).update_time
            break
        except (gexc.FailedPrecondition, gexc.Conflict):
            continue  # another run took it first: decide again
    else:
        return ("contended", 500)
    items, token = _list(state.get("sync_token"))
    events = state_ref.parent.document("sub").collection("events")
    stored = {s.id: s.to_dict() or {} for s in
              db.get_all([events.document(i["id"]) for i in items]) if s.exists}
    seq = int(state.get("change_seq") or 0)
    batch = db.batch()
    changes = state_ref.parent.document("sub").collection("changes")
    for item in items:
        before = stored.get(item["id"])
        if before is not None and before.get("etag") == item.get("etag"):
            continue  # already current: no entry
        seq += 1
        kind = ("deleted" if item.get("status") == "cancelled"
                else "updated" if before is not None else "created")
        batch.set(events.document(item["id"]), {"etag": item.get("etag"), "event": item})
        batch.set(changes.document(f"{seq:020d}"),
                  {"seq": seq, "event_id": item["id"], "kind": kind, "event": item,
                   # the task's wait: created -> this run began (the emulator's dispatch)
                   "dispatch_s": began - queued_at if queued_at else None,
                   "received_at": task.get("received_at"), "queued_at": queued_at,
                   "began_at": began})
    batch.update(state_ref, {"sync_token": token, "synced_gen": lease["claimed_gen"],
                             "change_seq": seq, "lease_until": None},
                 option=db.write_option(last_update_time=fence))
    batch.commit()
    return "synced"
'''


class DesignFloor:
    """The floor's two functions (a process each), its watch channel on the bench's
    calendar, its queue on the stack's Cloud Tasks emulator, and its documents."""

    def __init__(self, env: dict[str, str], calendar_id: str, user: str,
                 run_dir: Path) -> None:
        self._env, self._calendar_id, self._user, self._dir = env, calendar_id, user, run_dir
        self.collection = f"bench-floor-{uuid.uuid4().hex[:8]}"
        self.processes: list[Any] = []
        self.cursor = 0
        self._channel: dict[str, str] | None = None

    def start(self, events: Any, db: Any) -> None:
        """Both functions up, the initial listing done (state synced), then the watch."""
        from infra.local import components
        from infra.local.processes import free_port

        source = self._dir / "floor_main.py"
        source.write_text(FLOOR_SOURCE)
        project = self._env["GOOGLE_CLOUD_PROJECT"]
        queue = self._queue(project)
        token = uuid.uuid4().hex
        worker_port, hook_port = free_port(), free_port()
        worker_url = f"http://{components.HOST}:{worker_port}/"
        hook_url = f"http://{components.HOST}:{hook_port}/"
        common = {"GOOGLE_CLOUD_PROJECT": project,
                  "FIRESTORE_EMULATOR_HOST": self._env["FIRESTORE_EMULATOR_HOST"],
                  "CLOUD_TASKS_EMULATOR_HOST": self._env["CLOUD_TASKS_EMULATOR_HOST"],
                  "FLOOR_API_ENDPOINT": self._env["CALENDAR_API_ENDPOINT"],
                  "FLOOR_USER": self._user, "FLOOR_CALENDAR_ID": self._calendar_id,
                  "FLOOR_COLLECTION": self.collection, "FLOOR_TOKEN": token,
                  "FLOOR_QUEUE": queue, "FLOOR_WORKER_URL": worker_url}
        self.processes.append(components.start_function(
            "floor_worker", worker_port, self._dir, common, source, timeout=60))
        self.processes.append(components.start_function(
            "floor_webhook", hook_port, self._dir, common, source, timeout=60))
        root = db.collection(self.collection)
        root.document("sub").set({"requested_gen": 1, "queued_gen": 1})
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(  # the first listing, in full
            worker_url, data=b"{}", method="POST"), timeout=60).read()
        state = root.document("state").get().to_dict() or {}
        if not state.get("sync_token"):
            raise SystemExit("the DESIGN floor's first listing stored no sync token")
        self.cursor = int(state.get("change_seq") or 0)
        channel_id = f"floor-{uuid.uuid4().hex}"
        opened = events.watch(calendarId=self._calendar_id, body={
            "id": channel_id, "type": "web_hook", "address": hook_url,
            "token": token}).execute()
        root.document("channel").set({"id": channel_id,
                                      "resource_id": opened["resourceId"]})
        self._channel = {"id": channel_id, "resourceId": opened["resourceId"]}

    def _queue(self, project: str) -> str:
        """A queue of the floor's own on the stack's emulator (the same dispatch loop)."""
        from infra.local.components import create_queue
        from infra.local.stack import LOCAL_REGION

        name = (f"projects/{project}/locations/{LOCAL_REGION}/queues/"
                f"bench-floor-{uuid.uuid4().hex[:8]}")
        create_queue(self._env["CLOUD_TASKS_EMULATOR_HOST"], name)
        return name

    def changes(self, db: Any) -> Any:
        return db.collection(self.collection).document("sub").collection("changes")

    def stop(self, api: Any = None) -> None:
        """Its channel stopped (so later sections' pushes cost it nothing), its
        functions stopped."""
        channel, self._channel = self._channel, None
        if api is not None and channel is not None:
            api.channels().stop(body=channel).execute()
        for process in self.processes:
            process.stop()
        self.processes = []


__all__ = ["FLOOR_SOURCE", "DesignFloor"]
