"""Test hooks inside the functions' own processes (never imported by production code).

`tests/faults/stack_main.py` is the functions-framework source of a test stack: it
calls `install(target)` and then serves `main.py`'s entry points unchanged. What
the hooks may do is decided at run time by a control file the test writes
(`CALSYNC_TEST_HOOKS_DIR/control.json`), so one stack can run a healthy scenario,
inject a fault for a while, or run a deliberately broken copy of one code path:

- **faults** (`budgets`: at most `count` times, in `target`, shared by every process
  of the target, a respawned one too): Firestore calls that raise (before the call,
  or after a write went through: the caller sees an error for a write that
  happened), a watch that is held `seconds` after Google answered (so a pause
  lands while it is in flight; with `until_switch`, less if the test turns that
  switch on first), the renewer killed right after a renewal's watch
  (the new channel open, the old one not yet retired).
- **switches** (on while present): Pub/Sub not answering (every publish fails
  after `seconds`), a publish-only run held before it releases its lease
  (`release_hold`, at most `seconds`).
- **mutations** (on while listed): the webhook's enqueue removed
  (`webhook_enqueue`), renewal of active channels disabled (`renewal`), a
  publish-only run that releases without the follow-up (`publish_drop`),
  `activate_channel` without its state condition (`activate_any_state`).
- **clock offset** (`CALSYNC_TEST_CLOCK_OFFSETS`, JSON `{target: seconds}`, fixed
  for the process's life): every `datetime.now` of calsync's modules in that
  process reads its wall clock shifted, as a host whose clock is off would.

Every fault and mutation that changed what happened is written to the journal
(`journal-<target>-<pid>.jsonl` beside the control file) where it happened, so a
test shows each one took effect rather than only that it was asked for.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib
import json
import os
import pkgutil
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HOOKS_DIR = "CALSYNC_TEST_HOOKS_DIR"
CLOCK_OFFSETS = "CALSYNC_TEST_CLOCK_OFFSETS"
CONTROL = "control.json"
MUTATIONS = ("webhook_enqueue", "renewal", "publish_drop", "activate_any_state")

_lock = threading.Lock()
_cache: tuple[tuple[int, int], dict[str, Any]] | None = None
_target = ""
_dir: Path | None = None


# -- control and journal ----------------------------------------------------------------

def control() -> dict[str, Any]:
    """The control file as last written (re-read when it changed)."""
    global _cache
    if _dir is None:
        return {}
    path = _dir / CONTROL
    try:
        stat = path.stat()
    except OSError:
        return {}
    key = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1]
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    with _lock:
        _cache = (key, data)
    return data


def journal(event: str, **fields: Any) -> None:
    """One line where it happened; written and closed at once (a kill loses nothing)."""
    if _dir is None:
        return
    line = json.dumps({"event": event, "target": _target, "pid": os.getpid(),
                       "t": time.time(), **fields}, default=str)
    with open(_dir / f"journal-{_target}-{os.getpid()}.jsonl", "a") as out:
        out.write(line + "\n")


def mutated(name: str) -> bool:
    return name in control().get("mutations", ())


def take(fault: str, **about: Any) -> dict[str, Any] | None:
    """Consume one use of a budget for `fault` in this target (across processes); a
    budget that names a value of `about` (e.g. `calendar_id`) applies only to it."""
    assert _dir is not None
    for budget_id, budget in sorted(control().get("budgets", {}).items()):
        if budget.get("fault") != fault or budget.get("target") not in (_target, "*"):
            continue
        if any(key in budget and budget[key] != value for key, value in about.items()):
            continue
        with open(_dir / f"budget-{budget_id}.count", "a+") as counter:
            fcntl.flock(counter, fcntl.LOCK_EX)
            counter.seek(0)
            used = int(counter.read() or 0)
            if used >= int(budget.get("count", 1)):
                continue
            counter.seek(0)
            counter.truncate()
            counter.write(str(used + 1))
        return {"id": budget_id, **budget}
    return None


def switch(name: str) -> dict[str, Any] | None:
    found = control().get("switches", {}).get(name)
    return found if isinstance(found, dict) else None


def _hold(seconds: float, until_switch: str | None = None, until_on: bool = True) -> None:
    """Wait `seconds`, or less: until the switch `until_switch` is on (with
    `until_on`) or off (without)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if until_switch is not None and (switch(until_switch) is not None) == until_on:
            return
        time.sleep(0.05)


# -- installing ---------------------------------------------------------------------------

def install(target: str) -> None:
    """Patch this process (a function of the local stack serving `target`)."""
    global _target, _dir
    _target = target
    directory = os.environ.get(HOOKS_DIR)
    _dir = Path(directory) if directory else None
    if _dir is None:
        return
    modules = _import_calsync()
    offsets = json.loads(os.environ.get(CLOCK_OFFSETS) or "{}")
    offset = float(offsets.get(target, 0.0))
    if offset:
        _skew_clock(modules, offset)
    _firestore_faults()
    _channel_hooks()
    _renewer_hooks()
    _delivery_hooks()
    _webhook_hooks()
    journal("installed", clock_offset=offset)


def _import_calsync() -> list[Any]:
    """Every calsync module, imported now (none does I/O at import), so that patches
    reach the modules the composition root imports lazily."""
    import functions

    found = [functions]
    for info in pkgutil.walk_packages(functions.__path__, "functions."):
        if info.name.startswith("functions.cli"):
            continue
        found.append(importlib.import_module(info.name))
    return found


# -- clock skew -------------------------------------------------------------------------------

_real_datetime = datetime


class _SkewedType(type):
    # Values read from Firestore are plain datetimes: they must still pass
    # `isinstance(value, datetime)` in a module whose `datetime` is the skewed one.
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, _real_datetime)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _real_datetime)


class SkewedDatetime(_real_datetime, metaclass=_SkewedType):
    """`datetime` whose `now()` is this process's wall clock plus a fixed offset."""

    offset = timedelta(0)

    @classmethod
    def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
        return _real_datetime.now(tz) + cls.offset


def _skew_clock(modules: list[Any], offset: float) -> None:
    SkewedDatetime.offset = timedelta(seconds=offset)
    for module in modules:
        if getattr(module, "datetime", None) is _real_datetime:
            module.datetime = SkewedDatetime


# -- Firestore errors -------------------------------------------------------------------------

_WRITES = {"set", "update", "delete", "create", "commit", "_commit"}


def _firestore_faults() -> None:
    from google.api_core import exceptions as gexc
    from google.cloud.firestore_v1 import batch, client, collection, document, query
    from google.cloud.firestore_v1 import transaction as txn

    def failure(owner: str, name: str) -> BaseException | None:
        # A budget of errors after the write (`after`, `write`) is spent on writes only.
        budget = take("firestore_error", write=name in _WRITES)
        if budget is None:
            return None
        after = name in _WRITES and budget.get("after", False)
        journal("firestore_error", budget=budget["id"], method=f"{owner}.{name}",
                mode="after" if after else "before")
        return gexc.DeadlineExceeded("injected: deadline exceeded after the write") if after \
            else gexc.ServiceUnavailable("injected: firestore unavailable")

    def wrap(cls: Any, name: str) -> None:
        original = getattr(cls, name)
        owner = cls.__name__

        @functools.wraps(original)
        def call(*args: Any, **kwargs: Any) -> Any:
            err = failure(owner, name)
            if err is None:
                return original(*args, **kwargs)
            if isinstance(err, gexc.DeadlineExceeded):
                original(*args, **kwargs)
            raise err

        setattr(cls, name, call)

    def wrap_stream(cls: Any) -> None:
        original = cls.stream

        @functools.wraps(original)
        def stream(*args: Any, **kwargs: Any) -> Any:
            err = failure(cls.__name__, "stream")
            if err is not None:
                raise err  # at the first item, as a failing gRPC stream does
            yield from original(*args, **kwargs)

        cls.stream = stream

    for name in ("get", "set", "update", "delete", "create"):
        wrap(document.DocumentReference, name)
    wrap(client.Client, "get_all")
    wrap(batch.WriteBatch, "commit")
    wrap(txn.Transaction, "_commit")
    wrap_stream(query.Query)
    wrap_stream(collection.CollectionReference)


# -- channels: held watches, refused activations, the mutant activation -------------------------

def _channel_hooks() -> None:
    from functions.adapters.firestore import subscriptions as store_module
    from functions.adapters.google.channels import GoogleChannels

    watch = GoogleChannels.watch

    @functools.wraps(watch)
    def held_watch(self: Any, subscription: Any, channel_id: str, *args: Any,
                   **kwargs: Any) -> Any:
        opened = watch(self, subscription, channel_id, *args, **kwargs)
        budget = take("watch_hold", calendar_id=subscription.calendar_id)
        if budget is not None:
            journal("watch_held", budget=budget["id"], subscription=subscription.id,
                    channel_id=channel_id)
            _hold(float(budget.get("seconds", 3.0)), budget.get("until_switch"))
            journal("watch_released", budget=budget["id"], subscription=subscription.id,
                    channel_id=channel_id)
        return opened

    GoogleChannels.watch = held_watch  # type: ignore[method-assign]

    store = store_module.SubscriptionStore
    activate = store.activate_channel

    @functools.wraps(activate)
    def observed_activate(self: Any, channel_id: str, sub_id: str, resource_id: str,
                          expiration: datetime, *args: Any, **kwargs: Any) -> bool:
        if activate(self, channel_id, sub_id, resource_id, expiration, *args, **kwargs):
            return True
        data = self.channel_doc(channel_id)
        if not mutated("activate_any_state") or not data:
            journal("activate_refused", channel_id=channel_id, subscription=sub_id,
                    state=data.get("state"))
            return False
        # The broken copy: what activate_channel did before it checked the state.
        self._channel(channel_id).update({
            "state": "active", "resource_id": resource_id, "expiration": expiration,
            "renewal_attempts": 0, "next_attempt_at": None, "last_error": None})
        with contextlib.suppress(Exception):
            self._sub(sub_id).update({"channel_id": channel_id,
                                      "channel_expiration": expiration})
        journal("mutation", name="activate_any_state", channel_id=channel_id,
                subscription=sub_id, revived=data.get("state"))
        return True

    store.activate_channel = observed_activate  # type: ignore[method-assign]

    save = store.save_channel

    @functools.wraps(save)
    def observed_save(self: Any, channel: Any, now: datetime, **fields: Any) -> Any:
        saved = save(self, channel, now, **fields)
        journal("channel_saved", channel_id=channel.id, subscription=channel.sub_id,
                created_at=now.isoformat())
        return saved  # the write's update time, where the store returns it

    store.save_channel = observed_save  # type: ignore[method-assign]

    claim = store.claim_channel

    @functools.wraps(claim)
    def observed_claim(self: Any, channel_id: str, *args: Any, **kwargs: Any) -> bool:
        taken = bool(claim(self, channel_id, *args, **kwargs))
        journal("claim_taken" if taken else "claim_refused", channel_id=channel_id)
        return taken

    store.claim_channel = observed_claim  # type: ignore[method-assign]


# -- the renewer: killed mid-renewal, renewal disabled --------------------------------------------

def _renewer_hooks() -> None:
    from functions.lifecycle import channel_renewal
    from functions.lifecycle.scan import Step
    from functions.lifecycle.subscriptions import SubscriptionService
    from functions.model import ACTIVE

    opener = SubscriptionService.open_channel

    @functools.wraps(opener)
    def open_channel(self: Any, sub: Any, attempts: int = 0) -> Any:
        opened = opener(self, sub, attempts)
        if opened is not None and _target == "renew_channels":
            budget = take("renewer_crash")
            if budget is not None:
                # The new channel is open and active, the old one not yet retired.
                journal("renewer_crash", budget=budget["id"], subscription=sub.id,
                        channel_id=opened.channel_id)
                os.kill(os.getpid(), signal.SIGKILL)
        return opened

    SubscriptionService.open_channel = open_channel  # type: ignore[method-assign]

    renewal = channel_renewal.ChannelRenewal
    renew = renewal._renew

    @functools.wraps(renew)
    def maybe_renew(self: Any, channel: Any, doc: dict[str, Any]) -> Any:
        claimed = doc.get("claimed_until")
        if claimed is not None and claimed > datetime.now(UTC):
            # Another run's claim, seen in the row this run queried: two runs went
            # for one due channel (the claim itself is then not even tried).
            journal("claim_seen_held", channel_id=channel.id)
        if channel.state == ACTIVE and mutated("renewal"):
            journal("mutation", name="renewal", channel_id=channel.id,
                    subscription=channel.sub_id)
            return Step.SKIPPED
        return renew(self, channel, doc)

    renewal._renew = maybe_renew  # type: ignore[method-assign]


# -- delivery: Pub/Sub not answering, the publish-only drop --------------------------------------

def _delivery_hooks() -> None:
    from google.api_core import exceptions as gexc

    from functions.adapters.firestore.outbox import OutboxFirestoreStore
    from functions.adapters.google.pubsub import PubSubPublisher

    submit = PubSubPublisher.submit_batch

    @functools.wraps(submit)
    def stalled_submit(self: Any, ordering_key: str, messages: Any) -> list[Future[str]]:
        stall = switch("publish_stall")
        if stall is None:
            return submit(self, ordering_key, messages)
        futures: list[Future[str]] = [Future() for _ in messages]
        journal("publish_stalled", subscription=ordering_key, messages=len(futures))

        def fail() -> None:
            for future in futures:
                with contextlib.suppress(Exception):
                    future.set_exception(gexc.DeadlineExceeded("injected: pubsub silent"))

        timer = threading.Timer(float(stall.get("seconds", 8.0)), fail)
        timer.daemon = True
        timer.start()
        return futures

    PubSubPublisher.submit_batch = stalled_submit  # type: ignore[method-assign]

    release = OutboxFirestoreStore.release_publish_lease

    @functools.wraps(release)
    def maybe_drop(self: Any, lease: Any, progress: Any, now: datetime) -> Any:
        held = switch("release_hold")
        if held is not None:  # until the test turns the switch off (or `seconds`)
            journal("release_held", subscription=lease.subscription.id)
            _hold(float(held.get("seconds", 10.0)), "release_hold", until_on=False)
        result = release(self, lease, progress, now)
        journal("publish_only_released", subscription=lease.subscription.id,
                request_pending=result.request_pending)
        if result.request_pending and mutated("publish_drop"):
            journal("mutation", name="publish_drop", subscription=lease.subscription.id)
            return replace(result, request_pending=False)
        return result

    OutboxFirestoreStore.release_publish_lease = maybe_drop  # type: ignore[method-assign]


# -- the webhook: its enqueue removed -------------------------------------------------------------

def _webhook_hooks() -> None:
    from functions.adapters.google.tasks import CloudTasksQueue

    enqueue = CloudTasksQueue.enqueue_sync

    @functools.wraps(enqueue)
    def maybe_enqueue(self: Any, sub_id: str, generation: int, *args: Any,
                      **kwargs: Any) -> None:
        if _target == "webhook" and mutated("webhook_enqueue"):
            journal("mutation", name="webhook_enqueue", subscription=sub_id,
                    generation=generation)
            return
        enqueue(self, sub_id, generation, *args, **kwargs)

    CloudTasksQueue.enqueue_sync = maybe_enqueue  # type: ignore[method-assign]


def read_journal(directory: Path) -> list[dict[str, Any]]:
    """Every journal line of every process (for the test)."""
    lines: list[dict[str, Any]] = []
    for path in sorted(directory.glob("journal-*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return sorted(lines, key=lambda line: float(line.get("t", 0)))


__all__ = ["CLOCK_OFFSETS", "HOOKS_DIR", "MUTATIONS", "install", "read_journal"]
