"""Writes subscriptions, snapshots and feed entries in the store's layout (h-store's
`commit_page`: `events/{id}` through `codec.encode_snapshot`, `changes/{seq:020d}`
with escaped `fields` and `expire_at`), one atomic batch per page, as a sync run does."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.firestore import codec
from functions.adapters.firestore.store import seq_id

RETENTION = timedelta(days=30)


def create_subscription(db: Any, sub_id: str, **fields: Any) -> None:
    now = datetime.now(UTC)
    db.collection("subscriptions").document(sub_id).set({
        "calendar_id": f"{sub_id}@example.com", "owner": f"{sub_id}@example.com",
        "credentials_ref": "dwd", "status": "active", "last_error": None,
        "created_at": now, "labels": {}, **fields})


def event(event_id: str, summary: str, **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "status": "confirmed", "summary": summary,
            "etag": f'"{summary}"', **extra}


class FeedWriter:
    """Commits pages of changes for one subscription, keeping `seq` dense."""

    def __init__(self, db: Any, sub_id: str, clock: Any = None) -> None:
        self.db = db
        self.sub = db.collection("subscriptions").document(sub_id)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.seq = int((self.sub.collection("state").document("writer").get().to_dict()
                        or {}).get("change_seq") or 0)

    def commit(self, resources: Iterable[dict[str, Any]], deleted: Iterable[str] = (),
               expire_at: datetime | None = None) -> list[int]:
        """One page: upsert `resources`, delete `deleted`; returns the new seqs."""
        now = self.clock()
        batch = self.db.batch()
        seqs = []
        for resource in resources:
            before = self.snapshots.get(resource["id"])
            if before is None or before.get("_deleted"):
                kind = "created"
                fields = {k: {"before": None, "after": v} for k, v in resource.items()}
            else:
                kind = "updated"
                names = (set(resource) | set(before)) - {"etag"}
                fields = {k: {"before": before.get(k), "after": resource.get(k)}
                          for k in sorted(names)
                          if not k.startswith("_") and before.get(k) != resource.get(k)}
            seqs.append(self._write(batch, resource["id"], {**resource, "_deleted": False},
                                    kind, fields, now, expire_at))
        for event_id in deleted:
            before = self.snapshots[event_id]
            resource = {k: v for k, v in before.items() if not k.startswith("_")}
            resource["status"] = "cancelled"
            seqs.append(self._write(batch, event_id, {**resource, "_deleted": True}, "deleted",
                                    {"status": {"before": before.get("status"),
                                                "after": "cancelled"}}, now, expire_at))
        batch.set(self.sub.collection("state").document("writer"), {"change_seq": self.seq},
                  merge=True)
        batch.commit()
        return seqs

    def _write(self, batch: Any, event_id: str, snapshot: dict[str, Any], kind: str,
               fields: dict[str, Any], now: datetime, expire_at: datetime | None) -> int:
        self.seq += 1
        snapshot = {**snapshot, "_seq": self.seq, "_synced_at": now}
        self.snapshots[event_id] = snapshot
        batch.set(self.sub.collection("events").document(event_id),
                  codec.encode_snapshot(snapshot))
        batch.set(self.sub.collection("changes").document(seq_id(self.seq)), {
            "seq": self.seq, "kind": kind, "event_id": event_id,
            "recurring_event_id": snapshot.get("recurringEventId"),
            "fields": codec.escape(fields), "etag": snapshot.get("etag"), "at": now,
            "expire_at": expire_at or now + RETENTION,
        })
        return self.seq

    def delete_entries(self, seqs: Iterable[int]) -> None:
        """What the TTL policy does to expired entries."""
        for seq in seqs:
            self.sub.collection("changes").document(seq_id(seq)).delete()
