"""Push delivery: real HTTP POSTs to channel addresses, with retries and on-demand faults.

One dispatcher thread keeps a heap of due notifications and hands them to a
small pool of senders, so a slow receiver does not hold up other channels.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from email.utils import formatdate
from urllib.parse import urlparse

from .channels import LOOPBACK_HOSTS, Channel
from .clock import Clock
from .counters import Counters

log = logging.getLogger(__name__)
_DELIVERED = frozenset({102, 200, 201, 202, 204})
_RETRIED = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class Notification:
    """One message for one channel; ``number`` None means "take the merged number at send time"."""

    channel_id: str
    state: str
    number: int | None
    attempt: int = 1


@dataclass
class PushFaults:
    """Delivery faults for one channel or (key ``*``) for all of them."""

    drop: int = 0
    delay: float = 0.0
    duplicate: int = 0
    merge_window: float = 0.0
    paused: bool = False


@dataclass
class PushSettings:
    """Retry policy and the order of the initial ``sync`` relative to the watch response."""

    retry_initial: float = 0.5
    max_attempts: int = 5
    timeout: float = 2.0
    sync_order: str = "async"  # "async" | "before" | "after"


class PushHub:
    """All channels and the delivery machinery."""

    def __init__(
        self,
        clock: Clock,
        counters: Counters,
        may_notify: Callable[[Channel], bool] | None = None,
    ) -> None:
        self.clock = clock
        self.counters = counters
        # Whether a channel's user is still entitled to hear about changes (access revoked).
        self._may_notify = may_notify or (lambda channel: True)
        self.settings = PushSettings()
        self.lock = threading.Condition()
        self._sequence = itertools.count()
        self._queue: list[tuple[float, int, Notification]] = []
        self._in_flight = 0
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="calendar-emulator-push")
        self.reset()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="calendar-emulator-push", daemon=True
        )
        self._dispatcher.start()

    def reset(self) -> None:
        """Forget channels, faults and queued notifications."""
        with self.lock:
            self.channels: dict[str, Channel] = {}
            self._by_resource: dict[str, list[str]] = {}
            self._faults: dict[str, PushFaults] = {}
            self._held: list[Notification] = []
            self._merging: dict[str, int] = {}
            self._queue.clear()
            self.settings = PushSettings()

    def close(self) -> None:
        """Stop the dispatcher and the senders."""
        with self.lock:
            self._closed = True
            self.lock.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- channels ---------------------------------------------------------------------------

    def add(self, channel: Channel) -> None:
        """Register a channel (the caller checked id uniqueness under ``lock``)."""
        with self.lock:
            self.channels[channel.id] = channel
            self._by_resource.setdefault(channel.resource_key, []).append(channel.id)

    def stop(self, channel_id: str, resource_id: str | None) -> bool:
        """Stop a channel; False if there is no such live channel."""
        with self.lock:
            channel = self.channels.get(channel_id)
            if (
                channel is None
                or channel.stopped
                or (resource_id is not None and resource_id != channel.resource_id)
            ):
                return False
            channel.stopped = True
            return True

    def expire_now(self, channel_id: str) -> bool:
        """Make a channel expire at the current emulator time."""
        with self.lock:
            channel = self.channels.get(channel_id)
            if channel is None:
                return False
            channel.expiration_ms = self._now_ms()
            return True

    def send_sync(self, channel: Channel, synchronously: bool = False) -> None:
        """The initial ``sync`` message, number 1: queued, or attempted once right now."""
        notification = Notification(channel.id, "sync", 1)
        if synchronously:
            self._send(notification)
        else:
            self._enqueue(notification, 0.0)

    def changed(self, resource_key: str) -> None:
        """Something in the watched collection changed: ``exists`` to each live channel."""
        with self.lock:
            now_ms = self._now_ms()
            for channel_id in self._by_resource.get(resource_key, ()):
                channel = self.channels[channel_id]
                if channel.stopped or channel.expired(now_ms):
                    continue
                if not self._may_notify(channel):
                    self.counters.add("notifications", "suppressed")
                    continue
                number = channel.next_number()
                faults = self._faults.get(channel_id) or self._faults.get("*") or PushFaults()
                everywhere = self._faults.get("*")
                paused = faults.paused or (everywhere is not None and everywhere.paused)
                if faults.drop > 0:
                    faults.drop -= 1
                    self.counters.add("notifications", "dropped")
                    self.counters.add("by_channel", f"dropped:{channel_id}")
                    continue
                if faults.merge_window > 0:
                    if channel_id in self._merging:
                        self._merging[channel_id] = number
                        self.counters.add("notifications", "merged")
                        continue
                    self._merging[channel_id] = number
                    self._enqueue_locked(
                        Notification(channel_id, "exists", None), faults.merge_window + faults.delay
                    )
                    continue
                copies = 1
                if faults.duplicate > 0:
                    faults.duplicate -= 1
                    copies = 2
                    self.counters.add("notifications", "duplicated")
                    self.counters.add("by_channel", f"duplicated:{channel_id}")
                for _ in range(copies):
                    notification = Notification(channel_id, "exists", number)
                    if paused:
                        self._held.append(notification)
                    else:
                        self._enqueue_locked(notification, faults.delay)

    # -- faults -----------------------------------------------------------------------------

    def set_faults(self, channel_id: str | None, faults: PushFaults) -> None:
        """Replace the faults of one channel (or all, with None); unpausing releases held ones."""
        key = channel_id or "*"
        with self.lock:
            if channel_id is None:
                # Faults for every channel replace any per-channel ones.
                self._faults.clear()
            self._faults[key] = faults
            if not faults.paused:
                held, self._held = self._held, []
                for notification in held:
                    if key == "*" or notification.channel_id == key:
                        self._enqueue_locked(notification, 0.0)
                    else:
                        self._held.append(notification)

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent (held messages excepted)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.lock.wait(min(remaining, 0.05))
            return True

    def describe(self) -> list[dict[str, object]]:
        """Every channel with its state, for the control API."""
        with self.lock:
            now_ms = self._now_ms()
            return [
                {
                    **channel.resource(),
                    "address": channel.address,
                    "user": channel.user,
                    "stopped": channel.stopped,
                    "expired": channel.expired(now_ms),
                    "lastMessageNumber": channel.last_number,
                }
                for channel in self.channels.values()
            ]

    # -- delivery ---------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock.timestamp() * 1000)

    def _enqueue(self, notification: Notification, delay: float) -> None:
        with self.lock:
            self._enqueue_locked(notification, delay)

    def _enqueue_locked(self, notification: Notification, delay: float) -> None:
        heapq.heappush(self._queue, (time.monotonic() + delay, next(self._sequence), notification))
        self.lock.notify_all()

    def _dispatch(self) -> None:
        with self.lock:
            while not self._closed:
                if not self._queue:
                    self.lock.wait()
                    continue
                due, _, notification = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self.lock.wait(wait)
                    continue
                heapq.heappop(self._queue)
                if notification.number is None:
                    notification = replace(
                        notification, number=self._merging.pop(notification.channel_id, 0)
                    )
                self._in_flight += 1
                try:
                    self._pool.submit(self._send_and_release, notification)
                except RuntimeError:  # pool shut down
                    self._in_flight -= 1

    def _send_and_release(self, notification: Notification) -> None:
        try:
            self._send(notification)
        finally:
            with self.lock:
                self._in_flight -= 1
                self.lock.notify_all()

    def _send(self, notification: Notification) -> None:
        with self.lock:
            channel = self.channels.get(notification.channel_id)
            if channel is None or channel.stopped or channel.expired(self._now_ms()):
                self.counters.add("notifications", "suppressed")
                return
            headers = {
                "X-Goog-Channel-ID": channel.id,
                "X-Goog-Message-Number": str(notification.number),
                "X-Goog-Resource-ID": channel.resource_id,
                "X-Goog-Resource-State": notification.state,
                "X-Goog-Resource-URI": channel.resource_uri,
                "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
                "Content-Length": "0",
            }
            if channel.expiration_ms is not None:
                headers["X-Goog-Channel-Expiration"] = formatdate(
                    channel.expiration_ms / 1000, usegmt=True
                )
            if channel.token is not None:
                headers["X-Goog-Channel-Token"] = channel.token
            address = channel.address
        status = self._post(address, headers)
        if status in _DELIVERED:
            self.counters.add("notifications", "delivered")
            self.counters.add("by_channel", f"delivered:{notification.channel_id}")
            self.counters.add("notifications", f"delivered_{notification.state}")
            return
        if (
            status is None or status in _RETRIED
        ) and notification.attempt < self.settings.max_attempts:
            self.counters.add("notifications", "retried")
            backoff = self.settings.retry_initial * 2 ** (notification.attempt - 1)
            self._enqueue(replace(notification, attempt=notification.attempt + 1), backoff)
            return
        self.counters.add("notifications", "failed")

    def _post(self, address: str, headers: dict[str, str]) -> int | None:
        """POST with an empty body; the status, or None when the receiver is unreachable."""
        if urlparse(address).hostname not in LOOPBACK_HOSTS:
            # The emulator never sends traffic off this machine.
            log.warning("not delivering to non-loopback address %s", address)
            return 0
        parsed = urlparse(address)
        connection_class = (
            http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        )
        path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        connection = connection_class(
            parsed.hostname or "", parsed.port, timeout=self.settings.timeout
        )
        try:
            # http.client rather than urllib: Google's POST has no Content-Type at all.
            connection.request("POST", path, body=b"", headers=headers)
            return int(connection.getresponse().status)
        except (OSError, http.client.HTTPException) as err:
            log.info("push to %s failed: %s", address, err)
            return None
        finally:
            connection.close()
