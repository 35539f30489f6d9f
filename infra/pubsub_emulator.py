"""The gcloud Pub/Sub emulator: start it on a loopback port, create topics and
subscriptions through the real client, stop its whole process group.

Written like `infra.local.components.start_firestore`, so the local stack can
call `start_pubsub` beside the other components. The client library switches
to the emulator by itself when `PUBSUB_EMULATOR_HOST` is set.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra.local.processes import ManagedProcess, StackError, port_in_use, wait_until

HOST = "127.0.0.1"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status) == 200
    except urllib.error.HTTPError:
        return False


def start_pubsub(
    port: int, run_dir: Path, timeout: float = 90.0,
    on_start: Callable[[ManagedProcess], None] | None = None,
) -> ManagedProcess:
    """Start `gcloud beta emulators pubsub start` and wait until it answers."""
    if port_in_use(port):
        raise StackError(f"pubsub emulator: port {port} on {HOST} is already in use")
    env = dict(os.environ)
    for key in ("GOOGLE_APPLICATION_CREDENTIALS", "PUBSUB_EMULATOR_HOST"):
        env.pop(key, None)
    process = ManagedProcess(
        "pubsub emulator",
        ["gcloud", "beta", "emulators", "pubsub", "start", f"--host-port={HOST}:{port}",
         "--quiet"],
        run_dir / "pubsub.log",
        env=env,
        on_start=on_start,
    )
    process.start()
    try:
        wait_until(lambda: _answers(f"http://{HOST}:{port}/"), process, timeout,
                   f"answering on http://{HOST}:{port}/")
    except BaseException:
        process.stop()
        raise
    return process


@contextmanager
def emulator_env(host: str) -> Iterator[None]:
    """Point the Pub/Sub client library at `host` for the duration."""
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = saved


def create_topic(project: str, topic: str) -> str:
    """Create `topic` (an existing one is kept); its path. Needs PUBSUB_EMULATOR_HOST."""
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.api_core import exceptions

    client = pubsub_v1.PublisherClient()
    path = client.topic_path(project, topic)
    with contextlib.suppress(exceptions.AlreadyExists):
        client.create_topic(name=path)
    return path


def delete_topic(project: str, topic: str) -> None:
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.api_core import exceptions

    client = pubsub_v1.PublisherClient()
    with contextlib.suppress(exceptions.NotFound):
        client.delete_topic(topic=client.topic_path(project, topic))


def create_subscription(project: str, topic: str, name: str,
                        push_endpoint: str | None = None, ordered: bool = True) -> str:
    """A (pull, or push to `push_endpoint`) subscription with message ordering."""
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.api_core import exceptions

    client = pubsub_v1.SubscriberClient()
    path = client.subscription_path(project, name)
    request: dict[str, Any] = {
        "name": path, "topic": f"projects/{project}/topics/{topic}",
        "enable_message_ordering": ordered, "ack_deadline_seconds": 10,
    }
    if push_endpoint:
        request["push_config"] = {"push_endpoint": push_endpoint}
    try:
        client.create_subscription(request=request)
    except exceptions.AlreadyExists:
        pass
    finally:
        client.close()
    return path
