"""Owners' Calendar call budgets in Firestore (`ports.CallBudget`).

`call_budgets/{owner hash}-{k}`, k in [0, CALSYNC_USER_BUDGET_SHARDS): one share of
the owner's token bucket each (`functions.sync.budget.UserBucket`). A subscription's
takes read its share (k from its id) and write it in a transaction (two runs never
spend the same tokens): a take, or a slot booked for a deferred run, each run at most
one of each. An owner's calendars spread evenly over the shares, so a share sees at
most CALSYNC_USER_CALLS_PER_MINUTE / 60 / shares takes a second (0.5 with the
defaults) and as many bookings: about one write a second at the most an owner can
sustain, no hot document, and no project-wide counter (the project's budget is the
queue's rate). A renewal that finds its share short books nothing and writes
nothing.

A take is a read and one write conditioned on what was read (its update time, or its
absence): a write in between fails it and it decides again from a new read, which is
what a transaction gave, one round trip (begin) fewer. The read can be made ahead
(`warm`), beside the run's lease, when this process has seen the subscription's
owner before (a subscription's owner never changes): a run's take is then one write
on its path. A snapshot read ahead only ever shows at least the tokens there are (a
write in between spends or books), so it is never trusted for "short": that answer
is read again.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc

from functions.adapters.firestore.catalogue import CALL_BUDGETS
from functions.adapters.firestore.store import _translated
from functions.errors import StoreError
from functions.ports import CallBudget
from functions.sync.budget import UserBucket


def budget_share_id(owner: str, share: int) -> str:
    """The document of one share of an owner's bucket (the owner's address hashed:
    document ids carry no personal data)."""
    return f"{hashlib.sha256(owner.encode()).hexdigest()[:24]}-{share}"


def share_of(subscription: str, shards: int) -> int:
    """The share a subscription's runs take from (stable, so a deferred run comes
    back to the share that booked its slot)."""
    return int.from_bytes(hashlib.sha256(subscription.encode()).digest()[:8], "big") % shards


# Conditioned writes a take tries, a growing jittered pause apart, before it answers
# StoreError (the run's task is retried by the queue): what the transaction it
# replaced did when its own retries were spent.
TAKE_ATTEMPTS = 12
# Owners remembered per process (subscription -> owner), for reads made ahead.
OWNERS_REMEMBERED = 10_000
READ_AHEAD_THREADS = 4


class FirestoreCallBudget(CallBudget):
    def __init__(self, db: Any, per_minute: int, shards: int) -> None:
        self._db = db
        self._bucket = UserBucket(per_minute, shards)
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}  # subscription -> owner: it never changes
        self._ahead: dict[str, Future[Any]] = {}  # subscription -> its share, read ahead
        self._pool: ThreadPoolExecutor | None = None

    def _ref(self, owner: str, subscription: str) -> Any:
        return self._db.collection(CALL_BUDGETS).document(
            budget_share_id(owner, share_of(subscription, self._bucket.shards)))

    def warm(self, subscription: str) -> None:
        with self._lock:
            owner = self._owners.get(subscription)
            if owner is None or subscription in self._ahead:
                return
            if len(self._ahead) >= OWNERS_REMEMBERED:  # reads ahead no take came for
                self._ahead.clear()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(READ_AHEAD_THREADS,
                                                thread_name_prefix="calsync-budget-read")
            self._ahead[subscription] = self._pool.submit(
                self._ref(owner, subscription).get)

    def _read_ahead(self, subscription: str, ref: Any) -> Any | None:
        """The share read by `warm`, if it is this one and the read succeeded."""
        with self._lock:
            ahead = self._ahead.pop(subscription, None)
        if ahead is None:
            return None
        try:
            snapshot = ahead.result()
        except Exception:  # noqa: BLE001 - only a head start: read it again
            return None
        return snapshot if snapshot.reference.path == ref.path else None

    def take(self, owner: str, subscription: str, calls: int, now: datetime, *,
             booked: datetime | None = None, book: bool = True) -> datetime | None:
        ref = self._ref(owner, subscription)
        with self._lock:
            if subscription not in self._owners and len(self._owners) >= OWNERS_REMEMBERED:
                self._owners.clear()
            self._owners[subscription] = owner
        snapshot = self._read_ahead(subscription, ref)
        for attempt in range(TAKE_ATTEMPTS):
            ahead = snapshot is not None
            if snapshot is None:
                with _translated():
                    snapshot = ref.get()
            stored = snapshot.to_dict() if snapshot.exists else None
            fields, allowed_at = self._bucket.take(stored, calls, now, booked=booked,
                                                   book=book)
            if fields is None and ahead:
                snapshot = None  # "short" from a read made ahead: read it again
                continue
            if fields is None:
                return allowed_at
            try:
                with _translated():
                    if snapshot.exists:
                        ref.update(fields, option=self._db.write_option(
                            last_update_time=snapshot.update_time))
                    else:
                        ref.create(fields)
                return allowed_at
            except StoreError as err:
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted
                                  | gexc.Conflict):
                    raise
            snapshot = None  # written in between: decide again from a new read
            time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise StoreError(f"call budget share {ref.id} contended: {TAKE_ATTEMPTS} "
                         "conditioned writes lost to others")
