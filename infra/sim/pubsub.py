"""A Pub/Sub publisher that acknowledges at once, counting messages and bytes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from functions.ports import OutMessage, Publisher
from infra.sim.meter import Timeline

# Pub/Sub bills each publish request as at least 1,000 bytes; the client batches,
# but a run's messages for one subscription rarely fill a batch, so count each.
MIN_BILLED_BYTES = 1000


class SimPublisher(Publisher):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.messages = Timeline()
        self.bytes = 0
        self.billed_bytes = 0
        self.resumes = 0
        self.counting = True
        self._ids = 0

    def resume(self, ordering_key: str) -> None:
        self.resumes += 1

    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        self._ids += 1
        size = len(message.data) + sum(len(k) + len(v) for k, v in message.attributes.items())
        if self.counting:
            self.messages.add(self._now())
            self.bytes += size
            self.billed_bytes += max(size, MIN_BILLED_BYTES)
        future: Future[str] = Future()
        future.set_result(str(self._ids))
        return future
