"""The refusing proxy makes real enqueues fail, and lets them through again."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from functions.adapters.google.tasks import CloudTasksQueue
from functions.config import Settings
from functions.errors import QueueUnavailable
from tests.e2e.conftest import wait_until
from tests.faults.proxy import TcpProxy

LATER = datetime(2099, 1, 1, tzinfo=UTC)  # never dispatched during the test


def test_enqueues_fail_while_the_proxy_refuses_and_succeed_after(
        tasks_emulator: str, tasks_queue: str) -> None:
    _, project, _, region, _, queue_id = tasks_queue.split("/")
    with TcpProxy(int(tasks_emulator.rsplit(":", 1)[1])) as proxy:
        settings = Settings(project=project, region=region, tasks_queue=queue_id,
                            worker_url="http://127.0.0.1:9/", tasks_emulator_host=proxy.address)
        queue = CloudTasksQueue(settings, queue_path=tasks_queue)
        queue.enqueue_sync("sub-proxy", 1, LATER)
        proxy.refuse()
        # Every enqueue fails while the proxy refuses. The first may fail on the
        # connection refuse() cut, before gRPC dials again (how soon it does depends on
        # the machine's load): enqueue until one has dialled and been cut at the proxy.
        deadline = time.monotonic() + 20
        while True:
            with pytest.raises(QueueUnavailable):
                queue.enqueue_sync("sub-proxy", 2, LATER)
            if proxy.refused_connections >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        proxy.accept()

        def goes_through() -> bool:
            try:
                queue.enqueue_sync("sub-proxy", 3, LATER)
            except QueueUnavailable:
                return False
            return True

        wait_until(goes_through, 20, "an enqueue through the re-opened proxy")
        names = sorted(t.name.rsplit("/", 1)[-1].split("-")[2]
                       for t in queue._client.list_tasks(parent=tasks_queue))
        assert names == ["1", "3"]
        assert proxy.refusals == 1 and proxy.connections >= 2
        assert proxy.refused_connections >= 1  # the refused enqueue reached the proxy
