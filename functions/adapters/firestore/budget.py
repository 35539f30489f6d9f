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
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from google.cloud import firestore

from functions.adapters.firestore.catalogue import CALL_BUDGETS
from functions.adapters.firestore.store import _translated
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


class FirestoreCallBudget(CallBudget):
    def __init__(self, db: Any, per_minute: int, shards: int) -> None:
        self._db = db
        self._bucket = UserBucket(per_minute, shards)

    def take(self, owner: str, subscription: str, calls: int, now: datetime, *,
             booked: datetime | None = None, book: bool = True) -> datetime | None:
        ref = self._db.collection(CALL_BUDGETS).document(
            budget_share_id(owner, share_of(subscription, self._bucket.shards)))

        @firestore.transactional
        def run(transaction: Any) -> datetime | None:
            snapshot = ref.get(transaction=transaction)
            stored = snapshot.to_dict() if snapshot.exists else None
            fields, allowed_at = self._bucket.take(stored, calls, now, booked=booked,
                                                   book=book)
            if fields is not None:
                transaction.set(ref, fields)
            return allowed_at

        with _translated():
            result: datetime | None = run(self._db.transaction())
        return result
