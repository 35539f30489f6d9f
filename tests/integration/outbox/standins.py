"""A backlog written straight into the store's layout, and publishers standing in
for Pub/Sub where the emulator cannot show the behaviour (each says why).

DESIGN.md, "What the emulators do not show": a stopped Pub/Sub emulator makes
publishes hang inside the client's retries, where a test can neither see nor
bound them, and the emulator never fails transiently; so a Pub/Sub that never
answers, or fails once, is a stand-in for the `Publisher` port. Everything
else (the store, the lease, the feed) is the real emulator.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.firestore import codec
from functions.adapters.firestore.store import seq_id
from functions.model import ChangeDraft
from functions.ports import OutMessage, Publisher

RETENTION = timedelta(days=30)


def seed_backlog(db: Any, sub_id: str, count: int, *, published: int = 0,
                 at: datetime | None = None, expire_at: datetime | None = None,
                 status: str = "active", labels: dict[str, str] | None = None) -> None:
    """A subscription synced once (nothing requested since) whose feed holds
    `count` entries, `published` of them published: a publishing run's backlog."""
    at = at or datetime.now(UTC)
    expire_at = expire_at or at + RETENTION
    sub = db.collection("subscriptions").document(sub_id)
    sub.set({"calendar_id": "primary", "owner": f"{sub_id}@example.com",
             "credentials_ref": "bearer", "status": status, "requested_gen": 1,
             "labels": labels or {}, "last_synced_at": at})
    sub.collection("state").document("writer").set({
        "sync_token": "token-1", "synced_gen": 1, "claimed_gen": 1, "lease_generation": 1,
        "lease_until": None, "change_seq": count, "published_seq": published,
        "publish_pending_since": at if published < count else None})
    batch, pending = db.batch(), 0
    for seq in range(1, count + 1):
        draft = ChangeDraft("created", f"e{seq:06d}",
                            {"summary": {"before": None, "after": f"event {seq}"}}, f'"{seq}"')
        batch.set(sub.collection("changes").document(seq_id(seq)),
                  codec.encode_change(draft, seq, at, expire_at))
        pending += 1
        if pending == 500:
            batch.commit()
            batch, pending = db.batch(), 0
    if pending:
        batch.commit()


class HangingPublisher(Publisher):
    """A Pub/Sub that never answers (a dropped network): no future ever completes.
    Counts what it was handed and still holds, as the real client would."""

    def __init__(self) -> None:
        self.submitted = 0
        self.held: list[Future[str]] = []
        self.resumes = 0

    @property
    def outstanding(self) -> int:
        return sum(1 for future in self.held if not future.done())

    def resume(self, ordering_key: str) -> None:
        self.resumes += 1

    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        self.submitted += 1
        future: Future[str] = Future()
        self.held.append(future)
        return future


class Recording(Publisher):
    """The real publisher, recording every message handed to it (seq, marker)."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.sent: list[tuple[int, bool]] = []
        self._lock = threading.Lock()

    def resume(self, ordering_key: str) -> None:
        self.inner.resume(ordering_key)

    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        with self._lock:
            self.sent.append((int(message.attributes["seq"]),
                              message.attributes.get("truncated") == "true"))
        return self.inner.submit(ordering_key, message)


class FailingOnce(Recording):
    """The real publisher whose first publish fails transiently, as an unavailable
    service would; like the real client, the key then refuses messages until
    `resume` (the emulator never fails transiently)."""

    def __init__(self, inner: Publisher, error: BaseException) -> None:
        super().__init__(inner)
        self.error: BaseException | None = error
        self.paused = False

    def resume(self, ordering_key: str) -> None:
        self.paused = False
        super().resume(ordering_key)

    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        if self.error is not None or self.paused:
            future: Future[str] = Future()
            future.set_exception(self.error or RuntimeError("ordering key paused"))
            self.error, self.paused = None, True
            return future
        return super().submit(ordering_key, message)


class Stalling(Recording):
    """The real publisher for the first `acks` messages, then a Pub/Sub that stops
    answering (the emulator cannot be slowed down)."""

    def __init__(self, inner: Publisher, acks: int) -> None:
        super().__init__(inner)
        self.acks = acks

    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        if self.acks <= 0:
            return Future()
        self.acks -= 1
        return super().submit(ordering_key, message)
