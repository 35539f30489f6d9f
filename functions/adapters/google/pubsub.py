"""The `Publisher` port over google-cloud-pubsub (PUBSUB_EMULATOR_HOST switches
the client to the emulator by itself).

Bounded by construction (DESIGN.md, "Bounded publishing"): with message ordering
on, the client retries a failing publish for ever by default (its retry deadline
and timeout become 2**32 s), so a hanging Pub/Sub would keep every message ever
submitted in the process-wide client. Here each publish RPC is one attempt with
a deadline (`rpc_timeout`): when it fails, the client pauses the ordering key and
fails every message queued behind it, which frees them; the outbox decides
whether to retry (a bounded number of times). Flow control caps what the client
holds at once (`ERROR`: a submit over the cap fails at once instead of blocking).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from google.api_core import exceptions as gexc

from functions.errors import PublishRefused
from functions.ports import OutMessage, Publisher

# Pub/Sub accepts up to 10 MB and 1000 messages per request; with ordering, one
# batch per key is in flight at a time, so batches are as large as allowed.
MAX_MESSAGE_BYTES = 9_000_000
# Flow control holds this many runs' windows: a run that timed out leaves its
# window in the client until the RPC deadline; the next run may fill one more.
FLOW_CONTROL_WINDOWS = 2


class PubSubPublisher(Publisher):
    """One client per process, with message ordering on (ordering key = subscription)."""

    def __init__(self, project: str, topic: str, client: Any = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, *,
                 rpc_timeout: float = 10.0, max_messages: int = 1000,
                 max_bytes: int = 10 * 1024 * 1024) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        if client is None:
            types = pubsub_v1.types
            client = pubsub_v1.PublisherClient(
                batch_settings=types.BatchSettings(
                    max_bytes=max_message_bytes, max_latency=0.005, max_messages=1000),
                publisher_options=types.PublisherOptions(
                    enable_message_ordering=True,
                    flow_control=types.PublishFlowControl(
                        message_limit=FLOW_CONTROL_WINDOWS * max_messages,
                        byte_limit=FLOW_CONTROL_WINDOWS * max_bytes,
                        limit_exceeded_behavior=types.LimitExceededBehavior.ERROR),
                    retry=None, timeout=rpc_timeout),
            )
        self._client = client
        self._max_bytes = max_message_bytes
        self._rpc_timeout = rpc_timeout
        self.topic_path = f"projects/{project}/topics/{topic}"

    def resume(self, ordering_key: str) -> None:
        try:
            self._client.resume_publish(self.topic_path, ordering_key)
        except RuntimeError as err:  # "Ordering key is not paused": nothing to resume
            if "not paused" not in str(err):
                raise

    def submit(self, ordering_key: str, message: OutMessage) -> Future[str]:
        from google.cloud.pubsub_v1.publisher import exceptions as pexc

        size = len(message.data) + sum(len(k) + len(v) for k, v in
                                       message.attributes.items())
        if size > self._max_bytes:
            return _failed(PublishRefused(f"message of {size} bytes is over "
                                          f"{self._max_bytes}", alone=True))
        try:
            # One attempt with a deadline: with ordering, the client's own retry
            # would never end (see the module's docstring).
            future = self._client.publish(self.topic_path, message.data,
                                          ordering_key=ordering_key, retry=None,
                                          timeout=self._rpc_timeout, **message.attributes)
        except pexc.MessageTooLargeError as err:
            return _failed(PublishRefused(str(err), alone=True))
        except (ValueError, TypeError) as err:  # an attribute the client refuses
            return _failed(PublishRefused(str(err), alone=True))
        except pexc.PublishToPausedOrderingKeyException as err:
            return _failed(err)
        result: Future[str] = Future()

        def done(inner: Any) -> None:
            try:
                result.set_result(inner.result())
            except gexc.InvalidArgument as err:
                result.set_exception(PublishRefused(str(err)))
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                result.set_exception(err)

        future.add_done_callback(done)
        return result

    def close(self) -> None:
        self._client.stop()


def _failed(err: BaseException) -> Future[str]:
    future: Future[str] = Future()
    future.set_exception(err)
    return future
