"""Owners' Calendar call budgets in Firestore (`ports.CallBudget`).

`call_budgets/{owner hash}-{k}`, k in [0, CALSYNC_USER_BUDGET_SHARDS): one share of
the owner's token bucket each (`functions.sync.budget.UserBucket`). A take reads one
share chosen at random and writes it only when it holds the calls (a transaction, so
two runs never spend the same tokens); a short share is not written at all. One
owner's takes are spread evenly over the shares, so a share is written at most
CALSYNC_USER_CALLS_PER_MINUTE / 60 / shares times a second (0.5 with the defaults):
no hot document, and no project-wide counter (the project's budget is the queue's
rate).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
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


class FirestoreCallBudget(CallBudget):
    def __init__(self, db: Any, per_minute: int, shards: int,
                 pick: Callable[[int], int] = random.randrange) -> None:
        self._db = db
        self._bucket = UserBucket(per_minute, shards)
        self._pick = pick  # which share a take asks (tests pass their own)

    def take(self, owner: str, calls: int, now: datetime) -> datetime | None:
        ref = self._db.collection(CALL_BUDGETS).document(
            budget_share_id(owner, self._pick(self._bucket.shards)))

        @firestore.transactional
        def run(transaction: Any) -> datetime | None:
            snapshot = ref.get(transaction=transaction)
            stored = snapshot.to_dict() if snapshot.exists else None
            fields, allowed_at = self._bucket.take(stored, calls, now)
            if fields is not None:
                transaction.set(ref, fields)
            return allowed_at

        with _translated():
            result: datetime | None = run(self._db.transaction())
        return result
