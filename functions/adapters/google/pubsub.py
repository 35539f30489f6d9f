"""The `Publisher` port over google-cloud-pubsub (PUBSUB_EMULATOR_HOST switches
the client to the emulator by itself).

Bounded by construction (DESIGN.md, "Bounded publishing"). The library's
high-level `publish` retries a failing publish for ever once ordering is on (its
retry deadline and timeout become 2**32 s), so a hanging Pub/Sub kept every
message ever submitted in the process; and it costs ~120 µs of Python per
message. So the outbox hands over a window at a time (`submit_batch`) and this
adapter sends it as Publish requests of its own (up to 1,000 messages, 9 MB),
each one attempt with a deadline (`rpc_timeout`), through the library's client
(its transport, credentials, emulator switch) and its flow controller (`ERROR`:
a submit over the cap fails at once instead of waiting).

Ordering, as the library's ordered publishing does it: one ordering key's
requests go one after the other (the next starts when the previous succeeded);
after a failure the key refuses everything until `resume`, and every message
queued behind the failure fails with it, which frees it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from google.api_core import exceptions as gexc

from functions.errors import PublishRefused
from functions.ports import OutMessage, Publisher

# Pub/Sub accepts up to 10 MB and 1000 messages per request.
MAX_MESSAGE_BYTES = 9_000_000
MAX_REQUEST_MESSAGES = 1000
# Flow control holds this many runs' windows: a run that timed out leaves its
# window here until the request's deadline; the next run may fill one more.
FLOW_CONTROL_WINDOWS = 2
SENDERS = 4  # threads sending requests (one request per ordering key at a time)
_MAX_ATTRIBUTE_BYTES = 100 * (256 + 1024)  # attributes within Pub/Sub's limits, at most


class KeyPaused(RuntimeError):
    """An earlier message of this ordering key failed; `resume` lets it publish again."""


@dataclass
class _Key:
    """One ordering key's queue: the last request queued, whether it is paused, and
    its epoch (a failure starts a new one: what was queued before it fails too)."""

    tail: Future[None] | None = None
    paused: bool = False
    epoch: int = 0


class PubSubPublisher(Publisher):
    """One client per process; messages of one ordering key (subscription) in order."""

    def __init__(self, project: str, topic: str, client: Any = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, *,
                 rpc_timeout: float = 10.0, max_messages: int = 1000,
                 max_bytes: int = 10 * 1024 * 1024) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1
        from google.cloud.pubsub_v1.publisher.flow_controller import FlowController
        from google.pubsub_v1.types import PublishRequest, PubsubMessage

        types = pubsub_v1.types
        self.flow_control = types.PublishFlowControl(
            message_limit=FLOW_CONTROL_WINDOWS * max_messages,
            byte_limit=FLOW_CONTROL_WINDOWS * max_bytes,
            limit_exceeded_behavior=types.LimitExceededBehavior.ERROR)
        if client is None:
            client = pubsub_v1.PublisherClient(publisher_options=types.PublisherOptions(
                enable_message_ordering=True, flow_control=self.flow_control,
                retry=None, timeout=rpc_timeout))
        self._client = client
        self._flow = FlowController(self.flow_control)
        self._message = PubsubMessage.pb()
        self._request = PublishRequest.pb()
        self._max_bytes = max_message_bytes
        self._rpc_timeout = rpc_timeout
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="pubsub-send")
        self.topic_path = f"projects/{project}/topics/{topic}"

    def resume(self, ordering_key: str) -> None:
        with self._lock:
            key = self._keys.get(ordering_key)
            if key is not None:
                key.paused = False

    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        return self.submit_batch(ordering_key, [message])[0]

    def submit_batch(self, ordering_key: str,
                     messages: Sequence[OutMessage]) -> list[Future[str]]:
        futures: list[Future[str]] = [Future() for _ in messages]
        protos = []
        for index, message in enumerate(messages):
            size = len(message.data)
            if size + _MAX_ATTRIBUTE_BYTES > self._max_bytes:  # else it fits whatever they are
                size += sum(len(k) + len(v) for k, v in message.attributes.items())
            if size > self._max_bytes:
                # Refused before it left: it and everything after it stay unsent.
                futures[index].set_exception(PublishRefused(
                    f"message of {size} bytes is over {self._max_bytes}", alone=True))
                _fail(futures[index + 1:], KeyPaused("not sent: an earlier message was "
                                                     "refused"))
                break
            protos.append(self._message(data=message.data, attributes=message.attributes,
                                        ordering_key=ordering_key))
        if protos:
            self._enqueue(ordering_key, protos, futures[:len(protos)])
        return futures

    def _enqueue(self, ordering_key: str, protos: list[Any],
                 futures: list[Future[str]]) -> None:
        """Queue the messages' requests behind the key's earlier ones."""
        flowed: list[Any] = []
        try:
            for proto in protos:
                wrapped = SimpleNamespace(_pb=proto)
                self._flow.add(wrapped)  # type: ignore[arg-type]
                flowed.append(wrapped)
        except Exception as err:  # noqa: BLE001 - flow control full: nothing is queued
            for wrapped in flowed:
                self._flow.release(wrapped)  # type: ignore[arg-type]
            _fail(futures, err)
            return
        def release(_: Future[None]) -> None:
            for wrapped in flowed:
                self._flow.release(wrapped)  # type: ignore[arg-type]

        done: Future[None] = Future()
        done.add_done_callback(release)
        with self._lock:
            key = self._keys.setdefault(ordering_key, _Key())
            if key.paused:
                done.set_result(None)
                _fail(futures, KeyPaused(f"ordering key {ordering_key} is paused"))
                return
            previous, key.tail, epoch = key.tail, done, key.epoch

        def send() -> None:
            self._senders.submit(self._send, ordering_key, epoch, protos, futures, done)

        if previous is None or previous.done():
            send()
        else:
            previous.add_done_callback(lambda _: send())

    def _send(self, ordering_key: str, epoch: int, protos: list[Any],
              futures: list[Future[str]], done: Future[None]) -> None:
        try:
            with self._lock:
                behind_a_failure = self._keys[ordering_key].epoch != epoch
            if behind_a_failure:
                return _fail(futures, KeyPaused("not sent: an earlier message of ordering "
                                                f"key {ordering_key} failed"))
            start = 0
            for chunk in _requests(protos):
                try:
                    response = self._client._gapic_publish(
                        request=self._request(topic=self.topic_path, messages=chunk),
                        retry=None, timeout=self._rpc_timeout)
                except BaseException as err:  # noqa: BLE001 - handed to the futures
                    with self._lock:
                        failed = self._keys[ordering_key]
                        failed.paused = True
                        failed.epoch += 1
                    failure = (PublishRefused(str(err)) if isinstance(err, gexc.InvalidArgument)
                               else err)
                    return _fail(futures[start:], failure)
                for future, message_id in zip(futures[start:], response.message_ids,
                                              strict=False):
                    future.set_result(message_id)
                start += len(chunk)
            return None
        finally:
            with self._lock:
                queue = self._keys.get(ordering_key)
                if queue is not None and queue.tail is done:
                    queue.tail = None
                    if not queue.paused:
                        del self._keys[ordering_key]  # nothing queued: forget the key
            done.set_result(None)

    def close(self) -> None:
        self._senders.shutdown(wait=False, cancel_futures=True)
        self._client.stop()


def _requests(protos: list[Any]) -> list[list[Any]]:
    """Publish requests within Pub/Sub's limits (1,000 messages, 10 MB)."""
    chunks: list[list[Any]] = []
    size = 0
    for proto in protos:
        weight = proto.ByteSize()
        if not chunks or len(chunks[-1]) >= MAX_REQUEST_MESSAGES or size + weight > \
                MAX_MESSAGE_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(proto)
        size += weight
    return chunks


def _fail(futures: Sequence[Future[str]], err: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(err)
