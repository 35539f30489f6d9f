"""The owners' call budgets over the simulated database: `FirestoreCallBudget` re-done
(the same documents, `call_budgets/{owner hash}-{k}`, the same rule from
`functions.sync.budget.UserBucket`, one read per take and a write when it takes or
books), metered; the parity test holds the two together."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from functions.adapters.firestore.budget import budget_share_id, share_of
from functions.adapters.firestore.catalogue import CALL_BUDGETS
from functions.ports import CallBudget
from functions.sync.budget import UserBucket
from infra.sim.database import SimDatabase


class SimCallBudget(CallBudget):
    def __init__(self, db: SimDatabase, per_minute: int, shards: int) -> None:
        self.db = db
        self._bucket = UserBucket(per_minute, shards)
        self.docs: dict[str, dict[str, Any]] = {}

    def take(self, owner: str, subscription: str, calls: int, now: datetime, *,
             booked: datetime | None = None, book: bool = True) -> datetime | None:
        doc_id = budget_share_id(owner, share_of(subscription, self._bucket.shards))
        path = f"{CALL_BUDGETS}/{doc_id}"
        self.db.io.read(path)
        fields, allowed_at = self._bucket.take(self.docs.get(doc_id), calls, now,
                                               booked=booked, book=book)
        if fields is not None:
            self.db.io.write(path)
            self.docs[doc_id] = fields
        return allowed_at
